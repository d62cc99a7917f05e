"""``python -m harness`` is ``tinygpt-harness``."""

import sys

from harness.cli import main

sys.exit(main())
