"""The one error the gate raises for bad input: it names the file and the field at fault."""

from __future__ import annotations

from pathlib import Path


class GateInputError(Exception):
    """A run, store or claims file the gate cannot use; every command maps it to exit 2."""

    def __init__(self, path: Path | str, field: str, message: str) -> None:
        where = f"{path}" if not field else f"{path}: field {field!r}"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.field = field


class RefusalError(Exception):
    """Two runs that must not be compared (other machine, other build); exit 2 unless allowed."""
