"""The machine fingerprint tells apart VMs that share a generic CPU name (harness/machine.py)."""

from __future__ import annotations

from typing import Any

from harness.machine import cpu_isa, cpu_signature, fingerprint, fingerprint_id

# The first processor of two 2-vCPU cloud VMs that both call themselves "AMD EPYC", flags cut to
# a few of each kind: the second has another model number, AVX-512, and a kernel update's
# mitigation flag (md_clear) on top.
_ZEN3 = {
    "vendor_id": "AuthenticAMD",
    "cpu family": "25",
    "model": "1",
    "stepping": "1",
    "model name": "AMD EPYC",
    "flags": "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma bmi2 hypervisor ibpb",
}
_ZEN4 = {
    **_ZEN3,
    "model": "17",
    "flags": _ZEN3["flags"] + " avx512f avx512bw avx512vl md_clear",
}
_ARM = {
    "CPU implementer": "0x41",
    "CPU architecture": "8",
    "CPU variant": "0x0",
    "CPU part": "0xd0c",
    "CPU revision": "1",
    "Features": "fp asimd aes sha2 crc32 atomics asimdrdm",
}


def _info(cpuinfo: dict[str, str]) -> dict[str, Any]:
    """The stable fields of a fingerprint of a machine with ``cpuinfo``, the rest held fixed."""
    return {
        "cpu_model": "AMD EPYC",
        "cpu_signature": cpu_signature(cpuinfo),
        "cpu_isa": cpu_isa(cpuinfo),
        "cpu_count": 2,
        "memory_gib": 24,
        "os": "Debian GNU/Linux 12 (bookworm)",
        "arch": "x86_64",
    }


def test_two_vms_of_one_cpu_name_get_two_ids() -> None:
    """Same model name, cores, memory and OS, other silicon: the ids differ."""
    assert fingerprint_id(_info(_ZEN3)) != fingerprint_id(_info(_ZEN4))


def test_an_instruction_set_alone_changes_the_id() -> None:
    """One signature, AVX-512 given to one guest and not the other: the ids differ."""
    with_avx512 = {**_ZEN3, "flags": _ZEN3["flags"] + " avx512f"}
    assert fingerprint_id(_info(_ZEN3)) != fingerprint_id(_info(with_avx512))


def test_mitigation_and_hypervisor_flags_leave_the_id_alone() -> None:
    """A kernel or microcode update that adds md_clear or drops ibpb is the same machine."""
    patched = {**_ZEN3, "flags": _ZEN3["flags"].replace(" ibpb", "") + " md_clear flush_l1d"}
    assert fingerprint_id(_info(_ZEN3)) == fingerprint_id(_info(patched))


def test_signature_reads_x86_and_arm() -> None:
    """x86 gives vendor family/model/stepping; Arm its implementer and part; neither gives ''."""
    assert cpu_signature(_ZEN4) == "AuthenticAMD 25/17/1"
    assert cpu_signature(_ARM) == "0x41 8/0x0/0xd0c/1"
    assert cpu_signature({}) == ""


def test_isa_keeps_extensions_only_and_sorts_them() -> None:
    """x86: the extensions, sorted, without fpu, hypervisor or mitigations; Arm: its Features."""
    assert (
        cpu_isa(_ZEN4) == "avx avx2 avx512bw avx512f avx512vl bmi2 fma sse sse2 sse4_1 sse4_2 ssse3"
    )
    assert cpu_isa(_ARM) == "aes asimd asimdrdm atomics crc32 fp sha2"


def test_this_machine_records_its_signature_and_isa() -> None:
    """run.json's machine block carries both new fields, and the id covers them."""
    info = fingerprint()
    assert {"cpu_signature", "cpu_isa"} <= set(info)
    changed = {**info, "cpu_isa": info["cpu_isa"] + " avx10_2"}
    assert fingerprint_id(changed) != info["fingerprint_id"]
