"""JUnit XML of a run: one testcase per cell x check, for CI systems' test reports.

Layout: one ``<testsuite>`` per cell (named ``host/artifact/preset``, its ``time`` the cell's
wall time from its verdict row), holding one ``<testcase classname="host/artifact/preset"
name="check">`` per check the plan gave the cell. Outcomes come from
:func:`harness.rundir.verdict.check_outcomes`: ``fail`` is a ``<failure>``, ``error`` and
``incomplete`` an ``<error>``, ``incompatible`` and ``skipped`` a ``<skipped>``; the ``message``
attribute is the cause (one line) and the element's text every failing row of the check.
"""

from __future__ import annotations

import math
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from harness.rundir.rows import Row
from harness.rundir.verdict import CheckOutcome, check_outcomes

# A host's own words may carry terminal colour codes (ESC) or NULs: characters XML 1.0 cannot
# hold at all, so a CI's parser would reject the whole file. They are written as \\xNN.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
ELEMENT = {"fail": "failure", "error": "error", "incomplete": "error"}
SKIPPED = ("incompatible", "skipped")


class PlannedCell(Protocol):
    """A cell as the runner planned it (``harness.matrix.Cell``)."""

    @property
    def id(self) -> str:
        """``host/artifact/preset``."""
        ...

    @property
    def checks(self) -> tuple[str, ...]:
        """The check kinds the cell runs."""
        ...


def _text(value: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def _testcase(outcome: CheckOutcome) -> ET.Element:
    case = ET.Element("testcase", classname=outcome.cell, name=outcome.check)
    if outcome.status in ELEMENT:
        child = ET.SubElement(
            case, ELEMENT[outcome.status], message=_text(outcome.cause), type=outcome.status
        )
        child.text = _text("\n".join(outcome.details) or outcome.cause)
    elif outcome.status in SKIPPED:
        reason = f"{outcome.status}: {outcome.cause}" if outcome.cause else outcome.status
        ET.SubElement(case, "skipped", message=_text(reason), type=outcome.status)
    return case


def _counts(outcomes: Sequence[CheckOutcome]) -> dict[str, str]:
    def n(statuses: Iterable[str]) -> str:
        return str(sum(o.status in statuses for o in outcomes))

    return {
        "tests": str(len(outcomes)),
        "failures": n(("fail",)),
        "errors": n(("error", "incomplete")),
        "skipped": n(SKIPPED),
    }


def junit_xml(name: str, cells: Sequence[PlannedCell], rows: Sequence[Row]) -> str:
    """The JUnit XML document of ``cells`` (each with its checks) as ``rows`` record them."""
    by_cell: dict[str, list[Row]] = {}
    for row in rows:
        by_cell.setdefault(row.cell, []).append(row)
    root = ET.Element("testsuites", name=_text(name))
    everything: list[CheckOutcome] = []
    total = 0.0
    hostname = socket.gethostname()
    for cell in cells:
        mine = by_cell.get(cell.id, [])
        outcomes = check_outcomes(cell.id, cell.checks, mine)
        everything += outcomes
        suite = ET.SubElement(root, "testsuite", {"name": cell.id, **_counts(outcomes)})
        suite.set("hostname", hostname)
        wall = [r.value for r in mine if r.is_verdict and not math.isnan(r.value)]
        if wall:
            suite.set("time", f"{wall[-1]:.3f}")
            total += wall[-1]
        props = ET.SubElement(suite, "properties")
        first = next((r for r in mine if r.host_version or r.artifact_sha256), None)
        if first is not None:
            for key in ("host_version", "artifact_sha256"):
                ET.SubElement(props, "property", name=key, value=_text(getattr(first, key)))
        suite.extend(_testcase(o) for o in outcomes)
    for key, value in _counts(everything).items():
        root.set(key, value)
    root.set("time", f"{total:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def write_junit(path: Path, name: str, cells: Sequence[PlannedCell], rows: Sequence[Row]) -> None:
    """Write :func:`junit_xml` to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(name, cells, rows), encoding="utf-8")
