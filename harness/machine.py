"""What machine a run was measured on, and a short id to tell machines apart.

Speed numbers only compare within one machine, so ``run.json`` records this fingerprint and the
compare gate matches runs by :func:`fingerprint_id`. The id hashes only the fields that do not
change under routine updates (CPU model, signature and instruction sets, core count, memory, OS
family, architecture); the kernel and Python versions are recorded but left out, so a security
patch does not orphan history.

A cloud VM's model name can be generic ("AMD EPYC"): two VMs of that one name and one id ran
the same train step 2x apart, and the speedups over numpy moved by up to 38 % (docs/measured.md,
"One name, two machines"). So the id also hashes the CPU's signature (vendor, family, model,
stepping) and the instruction set extensions the guest is given: what a compiled kernel, a JIT
or a BLAS dispatches on.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STABLE_FIELDS = (
    "cpu_model",
    "cpu_signature",
    "cpu_isa",
    "cpu_count",
    "memory_gib",
    "os",
    "arch",
)

# /proc/cpuinfo fields of the first processor that name the silicon: x86, then Arm's.
_SIGNATURE_KEYS = (
    ("vendor_id", "cpu family", "model", "stepping"),
    ("CPU implementer", "CPU architecture", "CPU variant", "CPU part", "CPU revision"),
)
# x86 flags that are instruction set extensions a compiler or a BLAS dispatches on. The rest of
# the flags line is left out on purpose: mitigation and hypervisor flags (md_clear, ibpb,
# hypervisor, ...) come and go with kernel and microcode updates on the same silicon.
_X86_ISA_PREFIXES = (
    "sse", "ssse3", "avx", "fma", "f16c", "bmi", "adx", "popcnt", "movbe", "aes", "vaes",
    "pclmulqdq", "vpclmulqdq", "gfni", "sha_ni", "amx", "xop", "lzcnt", "abm",
)  # fmt: skip


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux
    return platform.processor() or platform.machine() or "unknown"


def _cpuinfo_first() -> dict[str, str]:
    """``key: value`` pairs of /proc/cpuinfo's first processor ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}  # not Linux
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_signature(cpuinfo: dict[str, str]) -> str:
    """The silicon's identity from /proc/cpuinfo: ``AuthenticAMD 25/17/1`` (vendor family/model/
    stepping) on x86, ``0x41 8/0x0/0xd0c/1`` on Arm; '' where neither is there."""
    for keys in _SIGNATURE_KEYS:
        values = [cpuinfo.get(k, "") for k in keys]
        if any(values):
            return f"{values[0]} {'/'.join(values[1:])}".strip()
    return ""


def cpu_isa(cpuinfo: dict[str, str]) -> str:
    """The instruction set extensions the guest is given, sorted: on x86 the flags that name one
    (:data:`_X86_ISA_PREFIXES`), on Arm every ``Features`` entry (each is one)."""
    if "flags" in cpuinfo:
        flags = cpuinfo["flags"].split()
        return " ".join(sorted(f for f in set(flags) if f.startswith(_X86_ISA_PREFIXES)))
    return " ".join(sorted(set(cpuinfo.get("Features", "").split())))


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
    cpuinfo = _cpuinfo_first()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_signature": cpu_signature(cpuinfo),
        "cpu_isa": cpu_isa(cpuinfo),
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


@dataclass(frozen=True)
class CpuTimes:
    """The machine's cumulative CPU time by kind, in clock ticks, from ``/proc/stat``'s ``cpu``
    line (all cores): what a speed figure competed with while it was taken."""

    busy: int  # user + nice + system + irq + softirq: work on this guest, ours and others'
    idle: int  # idle + iowait
    steal: int  # ticks the hypervisor gave this guest's vCPUs to someone else

    @property
    def total(self) -> int:
        """All ticks counted."""
        return self.busy + self.idle + self.steal


def cpu_times() -> CpuTimes | None:
    """The current :class:`CpuTimes`, or None where ``/proc/stat`` is unreadable (not Linux)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice: inside user/nice]
    if first[0] != "cpu" or len(first) < 9:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return CpuTimes(user + nice + system + irq + softirq, idle + iowait, steal)


def cpu_shares(before: CpuTimes | None, after: CpuTimes | None) -> str:
    """The machine's busy / idle / steal shares between two readings, e.g.
    ``busy 97% idle 1% steal 2%`` (busy counts every process, the measured one included)."""
    if before is None or after is None or after.total <= before.total:
        return "cpu shares not recorded"
    total = after.total - before.total
    busy, idle = after.busy - before.busy, after.idle - before.idle
    steal = after.steal - before.steal
    return (
        f"busy {100 * busy / total:.0f}% idle {100 * idle / total:.0f}% "
        f"steal {100 * steal / total:.0f}%"
    )
