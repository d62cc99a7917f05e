"""The one error the gate raises for bad input: it names the file and the field at fault."""

from __future__ import annotations

from harness.rundir.meta import RunDirError


class GateInputError(RunDirError):
    """A store, claims or thresholds file the gate cannot use; every command maps it to exit 2.

    A run directory's own defects are the run-directory reader's ``RunDirError`` (this class's
    base), so ``except RunDirError`` catches both.
    """


class RefusalError(Exception):
    """Two runs that must not be compared (other machine, other build); exit 2 unless allowed."""
