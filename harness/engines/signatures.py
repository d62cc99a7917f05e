"""Signatures an engine binds: the artifact's binding's, checked against its manifest entry."""

from __future__ import annotations

from harness.abi import KINDS, Signature
from harness.artifact import Artifact
from harness.hosts.base import ABIError


def artifact_signatures(artifact: Artifact) -> dict[str, Signature]:
    """Every export ``artifact``'s binding calls (harness.bindings), with its signature (and the
    format's allocator where the binding has no ``[memory]``).

    A manifest entry that records signatures must agree with the binding: one that disagrees
    was built for another ABI, so raise ABIError naming the export rather than call with the
    wrong argument kinds.
    """
    wanted = artifact.exports()
    if not artifact.signatures:
        return wanted
    for name, expected in wanted.items():
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
        if any(k not in KINDS for k in (*params, result)):
            raise ABIError(
                f"{artifact.name}: manifest signature of {name} has unknown kinds: {entry!r}"
            )
        sig = Signature(params=params, result=result)
        if sig != expected:
            raise ABIError(
                f"{artifact.name}: manifest signature of {name} is {sig}, its binding "
                f"({artifact.bound().path}) says {expected}"
            )
    return wanted
