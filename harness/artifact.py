"""An artifact as the manifest describes it: one built binary of the kernel library."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ArtifactKind = Literal["wasm", "native"]


@dataclass(frozen=True)
class Artifact:
    """One binary of the kernel library, with what hosts need to load it correctly."""

    name: str  # "wasm32", "wasm64", "native", or a named variant such as "wasm64-lowered"
    kind: ArtifactKind
    path: Path  # absolute path of the binary
    sha256: str
    ptr_width: int  # 32 or 64: a host converts `ptr` arguments from this, never per call
    target: str  # the zig/clang target triple
    features: tuple[str, ...] = ()  # e.g. ("simd128", "memory64")
    toolchain: str = ""  # e.g. "zig 0.17.1 (clang 21)"
    flags: tuple[str, ...] = ()
    signatures: dict[str, Any] = field(default_factory=dict)  # harness.abi.signatures_json()

    def to_json(self, root: Path) -> dict[str, Any]:
        """Return the manifest entry, with ``path`` relative to ``root``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path.relative_to(root)),
            "sha256": self.sha256,
            "ptr_width": self.ptr_width,
            "target": self.target,
            "features": list(self.features),
            "toolchain": self.toolchain,
            "flags": list(self.flags),
            "signatures": self.signatures,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path) -> Artifact:
        """Build an Artifact from a manifest entry whose path is relative to ``root``."""
        return cls(
            name=data["name"],
            kind=data["kind"],
            path=(root / data["path"]).resolve(),
            sha256=data["sha256"],
            ptr_width=int(data["ptr_width"]),
            target=data["target"],
            features=tuple(data.get("features", ())),
            toolchain=data.get("toolchain", ""),
            flags=tuple(data.get("flags", ())),
            signatures=dict(data.get("signatures", {})),
        )


def load_manifest(path: Path) -> dict[str, Artifact]:
    """Read ``manifest.json`` and return its artifacts by name."""
    data = json.loads(path.read_text())
    root = path.parent
    return {a["name"]: Artifact.from_json(a, root) for a in data["artifacts"]}
