"""When two runs may not be compared: other machines, or other builds of the same artifact.

Timings from two machines differ by more than any regression worth catching, so a cross-machine
comparison is refused. A *build* differs when the same source gives another binary: the same
artifact name with another sha256 at the same clean commit (another toolchain, other flags), or
another recorded build recipe. Different commits are expected to change the binary (that is what
the gate measures), so a sha256 change across commits alone is not a refusal.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from harness.artifact import Artifact, load_manifest
from harness.build import BUNDLED_MANIFEST
from harness.gate.errors import GateInputError, RefusalError
from harness.profile import ProfileError, find_profile, load_profile, with_artifacts
from harness.rundir.meta import RunMeta
from harness.rundir.reader import Run

_RECIPE_KEYS = ("format", "target", "ptr_width", "toolchain", "flags", "features")


def refusals(
    base: RunMeta, cand: RunMeta, timed_cells: Iterable[str] = (), perf: bool = True
) -> list[str]:
    """Every reason ``base`` and ``cand`` may not be compared (empty when they may).

    ``timed_cells`` are the cells whose timings feed a verdict. Shards of a merged run may come
    from several machines: that is fine for parity, and for timings when each timed cell was
    measured on the same machine in BASE and CAND (merged shards list their cells).
    """
    reasons: list[str] = []
    for meta in (base, cand):
        for name, shas in sorted(meta.mixed_builds().items()):
            reasons.append(
                f"{meta.path}: artifact {name!r} differs between merged shards "
                f"({', '.join(s[:12] for s in shas)})"
            )
    single = len(base.shard_fingerprints()) == 1 and len(cand.shard_fingerprints()) == 1
    if perf or single:  # parity may be merged across machines; two whole runs may not differ
        reasons += _machine_reasons(base, cand, sorted(set(timed_cells)))
    if perf:
        reasons += [why for why, _hard in adapter_reasons(base, cand)]
    same_source = base.commit == cand.commit and not base.dirty and not cand.dirty
    for name in sorted(set(base.artifacts) & set(cand.artifacts)):
        a, b = base.artifacts[name], cand.artifacts[name]
        # only a build from the recorded checkout is that commit's (runs before run.json said
        # in_checkout were all of the bundled library's)
        built_here = all(
            m.artifact_builds.get(name, {}).get("in_checkout", True) for m in (base, cand)
        )
        if same_source and built_here and a != b:
            reasons.append(
                f"artifact {name!r}: two different builds of commit {base.commit[:12]} "
                f"(sha256 {a[:12]} vs {b[:12]})"
            )
        recipe_a, recipe_b = _recipe(base, name), _recipe(cand, name)
        if any(k in recipe_b and recipe_a[k] != recipe_b[k] for k in recipe_a):
            changed = [k for k in recipe_a if k in recipe_b and recipe_a[k] != recipe_b[k]]
            reasons.append(
                f"artifact {name!r}: built differently ({', '.join(changed)}: "
                + "; ".join(f"{recipe_a.get(k)!r} vs {recipe_b.get(k)!r}" for k in changed)
                + ")"
            )
    return reasons


def adapter_reasons(base: RunMeta, cand: RunMeta) -> list[tuple[str, bool]]:
    """``(reason, hard)`` per artifact and host whose WebGPU adapter differs between the runs
    (run.json's ``webgpu_adapter``): a GPU's timings are another GPU's only across machines,
    and ``hard`` when one side is CPU-emulated and the other is not, which no flag overrides
    (issue 16: SwiftShader's figures are never compared with a GPU's)."""
    from harness.checks.webgpu_curve import adapter_identity, is_emulated

    out: list[tuple[str, bool]] = []
    for name in sorted(set(base.artifact_builds) & set(cand.artifact_builds)):
        a = base.artifact_builds[name].get("webgpu_adapter") or {}
        b = cand.artifact_builds[name].get("webgpu_adapter") or {}
        for host in sorted(set(a) & set(b)):
            ia, ib = adapter_identity(a[host]), adapter_identity(b[host])
            if ia == ib:
                continue
            hard = is_emulated(a[host]) != is_emulated(b[host])
            why = (
                "a CPU-emulated adapter's timings are never compared with a GPU's, whatever "
                "the flags"
                if hard
                else "one GPU's timings are not another's"
            )
            out.append(
                (f"artifact {name!r} on {host}: WebGPU adapter {ia} in BASE but {ib} in CAND; "
                 + why, hard)
            )  # fmt: skip
    return out


def _machine_reasons(base: RunMeta, cand: RunMeta, cells: list[str]) -> list[str]:
    single = len(base.shard_fingerprints()) == 1 and len(cand.shard_fingerprints()) == 1
    if single:
        if base.fingerprint_id == cand.fingerprint_id:
            return []
        return [
            f"different machine fingerprints: BASE {base.fingerprint_id} ({base.path}) vs "
            f"CAND {cand.fingerprint_id} ({cand.path})"
        ]
    by_base, by_cand = _per_cell(base), _per_cell(cand)
    if by_base is None or by_cand is None:
        merged = base if by_base is None else cand
        fps = sorted(merged.shard_fingerprints())
        return [
            f"{merged.path}: merged from shards of {len(fps)} machine fingerprints "
            f"({', '.join(fps)}) without a cell list per shard; perf cells of one comparison "
            "must come from one machine"
        ]
    return [
        f"cell {cell}: timed on {by_base.get(cell, '?')} in BASE but {by_cand.get(cell, '?')} "
        "in CAND; perf cells of one comparison must come from one machine"
        for cell in cells
        if by_base.get(cell, base.fingerprint_id) != by_cand.get(cell, cand.fingerprint_id)
    ]


def _per_cell(meta: RunMeta) -> dict[str, str] | None:
    if len(meta.shard_fingerprints()) == 1:
        return {}  # every cell on meta.fingerprint_id (the .get default above)
    return meta.cell_fingerprints()


def _recipe(meta: RunMeta, name: str) -> dict[str, object]:
    entry = meta.artifact_builds.get(name)
    if entry is None:
        return {}
    if "kind" in entry and "format" not in entry:  # runs before manifest schema 2 said "kind"
        entry = {**entry, "format": entry["kind"]}
    return {k: entry.get(k) for k in _RECIPE_KEYS if k in entry}


def check_comparable(
    base: RunMeta,
    cand: RunMeta,
    allow_cross_machine: bool,
    timed_cells: Iterable[str] = (),
    perf: bool = True,
) -> list[str]:
    """Raise RefusalError unless allowed; else return the overridden reasons (for the report)."""
    reasons = refusals(base, cand, timed_cells, perf)
    hard = [why for why, is_hard in adapter_reasons(base, cand) if is_hard] if perf else []
    if hard:
        raise RefusalError("refusing to compare:\n  - " + "\n  - ".join(hard))
    if reasons and not allow_cross_machine:
        raise RefusalError(
            "refusing to compare:\n  - "
            + "\n  - ".join(reasons)
            + "\n(pass --allow-cross-machine to compare anyway; verdicts will mix machine noise)"
        )
    return reasons


def build_of(path: Path) -> dict[str, Artifact]:
    """The artifacts a build names: a ``manifest.json``, or a project profile (``harness.toml``
    or its directory), whose ``[artifacts]`` join the bundled manifest's (if built) as in
    ``run --project``. GateInputError (exit 2) when it cannot be read."""
    if path.is_dir() or path.suffix == ".toml":
        bundled = load_manifest(BUNDLED_MANIFEST) if BUNDLED_MANIFEST.is_file() else {}
        try:
            return with_artifacts(load_profile(find_profile(path)), bundled, BUNDLED_MANIFEST)
        except ProfileError as exc:
            raise GateInputError(path, "", f"cannot read the project profile ({exc})") from exc
    try:
        return load_manifest(path)
    except (OSError, ValueError, KeyError) as exc:
        raise GateInputError(path, "", f"cannot read the artifact manifest ({exc})") from exc


def require_build(run: Run, manifest: Path, names: set[str], role: str) -> dict[str, Artifact]:
    """The artifacts of ``manifest`` (a manifest or a project profile: :func:`build_of`), if
    each of ``names`` is the very binary ``run`` measured.

    Timing another binary would answer another question, so anything else is refused before
    any measuring (exit 2).
    """
    artifacts = build_of(manifest)
    for name in sorted(names):
        built = artifacts.get(name)
        want = run.meta.artifacts.get(name, "")
        if built is None or built.sha256 != want:
            got = "missing" if built is None else built.sha256[:12]
            raise RefusalError(
                f"{manifest} artifact {name!r} is {got}, {role} measured {want[:12]}: build "
                f"{role}'s commit first so the rerun times the same binary"
            )
    return artifacts
