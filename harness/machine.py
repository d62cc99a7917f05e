"""What machine a run was measured on, and a short id to tell machines apart.

Speed numbers only compare within one machine, so ``run.json`` records this fingerprint and the
compare gate matches runs by :func:`fingerprint_id`. The id hashes only the fields that do not
change under routine updates (CPU model, core count, memory, OS family, architecture); the kernel
and Python versions are recorded but left out, so a security patch does not orphan history.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

STABLE_FIELDS = ("cpu_model", "cpu_count", "memory_gib", "os", "arch")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux
    return platform.processor() or platform.machine() or "unknown"


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0  # sysconf names are POSIX-only


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}".strip()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 0


def fingerprint() -> dict[str, Any]:
    """Return this machine's description, including its ``fingerprint_id``."""
    memory = _memory_bytes()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "usable_cores": _usable_cores(),  # the process's affinity, what a run can really use
        "memory_bytes": memory,
        # Rounded so that firmware reserving a few MiB more does not change the id.
        "memory_gib": round(memory / 2**30),
        "os": _os_name(),
        "system": platform.system(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    info["fingerprint_id"] = fingerprint_id(info)
    return info


def fingerprint_id(info: dict[str, Any]) -> str:
    """Return a 12-hex-digit hash of the :data:`STABLE_FIELDS` of ``info``."""
    stable = {k: info.get(k) for k in STABLE_FIELDS}
    blob = json.dumps(stable, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
