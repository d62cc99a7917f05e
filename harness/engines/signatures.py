"""Signatures an engine binds: the artifact's manifest entry, checked against ``harness.abi``."""

from __future__ import annotations

from harness.abi import EXPORTS, Kind, Signature
from harness.artifact import Artifact
from harness.hosts.base import ABIError

_KINDS: tuple[Kind, ...] = ("ptr", "i32", "f32", "void")


def artifact_signatures(artifact: Artifact) -> dict[str, Signature]:
    """Signatures from ``artifact.signatures`` (or the ABI when the entry has none).

    A manifest that disagrees with ``harness.abi.EXPORTS`` was built for another ABI: raise
    ABIError naming the export rather than call with the wrong argument kinds.
    """
    if not artifact.signatures:
        return dict(EXPORTS)
    out: dict[str, Signature] = {}
    for name, expected in EXPORTS.items():
        entry = artifact.signatures.get(name)
        if entry is None:
            raise ABIError(f"{artifact.name}: manifest signatures lack export {name}")
        try:
            params = tuple(entry["params"])
            result = entry["result"]
        except (KeyError, TypeError):
            raise ABIError(
                f"{artifact.name}: manifest signature of {name} is malformed: {entry!r}"
            ) from None
        if any(k not in _KINDS for k in (*params, result)):
            raise ABIError(
                f"{artifact.name}: manifest signature of {name} has unknown kinds: {entry!r}"
            )
        sig = Signature(params=params, result=result)
        if sig != expected:
            raise ABIError(
                f"{artifact.name}: manifest signature of {name} is {sig}, "
                f"harness.abi says {expected}"
            )
        out[name] = sig
    return out
