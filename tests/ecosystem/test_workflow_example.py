"""The GitHub Actions example (docs/ci/github-actions.yml): valid YAML of a workflow whose every
``tinygpt-harness`` command exists and parses with the harness's own parser.

actionlint is not installable here (its PyPI package downloads the binary from GitHub at build
time), so the workflow's structure is checked by loading it, as the issue allows.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import COMMANDS, command_parser
from harness.matrix import parse_shard

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "docs" / "ci" / "github-actions.yml"
USES = re.compile(r"^[\w.-]+/[\w./-]+@v\d+$")


def _load() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def _steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[Any, Any]]]:
    return [(job, step) for job, spec in workflow["jobs"].items() for step in spec["steps"]]


def _expand(text: str, env: dict[str, str]) -> str:
    """Replace ``${{ expr }}`` (matrix.shard -> 1, others -> a word) and ``$VAR`` from env."""
    text = re.sub(r"\$\{\{\s*matrix\.shard\s*\}\}", "1", text)
    text = re.sub(r"\$\{\{[^}]*\}\}", "EXPR", text)
    return re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), m.group(0)), text)


def harness_commands(workflow: dict[Any, Any]) -> list[list[str]]:
    """Every ``tinygpt-harness`` command line the workflow's ``run:`` steps execute, split."""
    env = {str(k): str(v) for k, v in workflow.get("env", {}).items()}
    found = []
    for _, step in _steps(workflow):
        script = _expand(str(step.get("run", "")), env).replace("\\\n", " ")
        for line in script.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "tinygpt-harness":
                found.append(words[1:])
    return found


def _parse(words: list[str]) -> argparse.Namespace:
    assert words and words[0] in COMMANDS, f"no such command: {words}"
    _, parser = command_parser(words[0])
    try:
        return parser.parse_args(words[1:])
    except SystemExit:
        pytest.fail(f"tinygpt-harness {shlex.join(words)} does not parse")


def test_every_harness_command_parses_with_the_real_parser() -> None:
    """Each `tinygpt-harness ...` of the workflow names a command and parses; the pipeline is
    all there: install-hosts, build, a sharded run with JUnit, merge, report, compare --html."""
    commands = harness_commands(_load())
    parsed = {words[0]: _parse(words) for words in commands}
    assert list(parsed) == ["install-hosts", "build", "run", "merge", "report", "compare"]
    run = parsed["run"]
    assert (REPO / run.matrix).is_file() and run.junit is not None
    assert parse_shard(run.shard) == (1, 4)
    assert parsed["compare"].html == Path("reports/compare")
    assert parsed["merge"].out == parsed["compare"].cand  # CAND is the merged run


def test_the_workflow_shards_uploads_junit_and_writes_the_step_summary() -> None:
    """The shard matrix matches --shard's N, JUnit is published, the summary reaches
    $GITHUB_STEP_SUMMARY, `needs` names real jobs, and every action is pinned to a version."""
    workflow = _load()
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert isinstance(on, dict) and "pull_request" in on
    shards = workflow["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, int(workflow["env"]["SHARDS"]) + 1))
    for job, spec in workflow["jobs"].items():
        needs = spec.get("needs", [])
        assert set([needs] if isinstance(needs, str) else needs) <= set(workflow["jobs"]), job
    steps = [step for _, step in _steps(workflow)]
    assert all(USES.match(s["uses"]) for s in steps if "uses" in s)
    junit = [s for s in steps if "junit" in str(s.get("uses", ""))]
    assert junit and "junit" in junit[0]["with"]["report_paths"]
    assert any('>> "$GITHUB_STEP_SUMMARY"' in str(s.get("run", "")) for s in steps)
