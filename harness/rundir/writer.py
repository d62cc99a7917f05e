"""``RowWriter``: append whole rows to ``results.csv``; a row on disk is never cut.

Each :meth:`RowWriter.write` encodes its rows into one buffer, appends it with ``os.write``
(looping over short writes), and fsyncs. If any of that fails (ENOSPC, EIO, ...), the file is
truncated back to its size before the call, so it ends with the last whole row, and the
``OSError`` is re-raised for the caller to turn into exit 2.

:func:`check_writable` checks a command's output path before it works, and
:func:`describe_os_error` says in one line why a path could not be written (exit 2).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
from collections.abc import Iterable
from pathlib import Path

from harness.rundir.rows import COLUMNS, RESULTS_FILE, Row, encode

# The one call that puts bytes in the file; a module attribute so tests can make it fail
# mid-row (ENOSPC) without root or a full filesystem.
_write = os.write


def _encode_lines(lines: Iterable[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    return buf.getvalue().encode("utf-8")


class RowWriter:
    """Append rows to ``DIR/results.csv``, each :meth:`write` whole and durable or not at all."""

    def __init__(self, run_dir: Path, name: str = RESULTS_FILE) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / name
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        if self._size == 0:
            self._append(_encode_lines([list(COLUMNS)]))

    def write(self, rows: Iterable[Row]) -> None:
        """Append ``rows`` as one buffer and fsync; on OSError nothing of them stays."""
        self._append(_encode_lines(encode(r) for r in rows))

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: writer is closed")
        try:
            view = memoryview(data)
            while view:
                view = view[_write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # best effort: the disk may refuse even this
                os.ftruncate(self._fd, self._size)
            if exc.filename is None:  # os.write names no file; the one line on stderr must
                raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
            raise
        self._size += len(data)

    def close(self) -> None:
        """Close the file (every write is already durable)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def check_writable(path: Path, *, directory: bool) -> None:
    """Raise OSError naming the path at fault if ``path`` could not be written; create nothing.

    ``directory``: ``path`` is a directory to write files into, else a file; either may not
    exist yet (the writer creates it and its parents). Called before any measuring or
    comparing, so a typo in an output path costs one line and exit 2, not a traceback after
    the work; a command that then stops on bad input leaves no empty output behind.
    """
    if path.exists():
        if directory and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        if not directory and path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        target = path
    else:
        # The nearest existing ancestor is where the first directory would be created.
        target = next(p for p in path.absolute().parents if p.exists())
        if not target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target))
    if not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(target))


def describe_os_error(exc: OSError, path: Path | None = None) -> str:
    """One line for an OSError: the path it names, the OS's words and the errno name.

    ``path``: the output the caller already named; the error's own path is then repeated only
    when it differs (a parent that is a file, say).
    """
    name = errno.errorcode.get(exc.errno or 0, "")
    said = exc.filename is not None and path is not None and str(exc.filename) == str(path)
    where = f"{exc.filename}: " if exc.filename and not said else ""
    return f"{where}{exc.strerror or exc}" + (f" ({name})" if name else "")
