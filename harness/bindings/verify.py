"""A run's bindings checked against its modules at load, before any host starts.

A binding that names an export the module lacks, or gives one the wrong number or kinds of
arguments, is a config error of the run (exit 2, with the binding's ``file:line``): it would
fail every cell of the artifact on every host alike. The module's exports come from its format
(:meth:`~harness.formats.ArtifactFormat.exports_found`): a ``.wasm``'s export and type sections
parsed by wasmtime, a native ``.so``'s ELF dynamic symbols (names only). A native export's
arity, which a symbol table cannot show, comes from the ``.so``'s DWARF and/or the C header the
binding names (:mod:`harness.formats.native_arity`); with neither, the artifact's status says
``arity unchecked: no DWARF, no header`` (the run prints it and records it in run.json). A
format whose files declare each export's arguments (``webgpu``'s ``kernels.toml``: arguments,
buffers and result) has each binding call compared with that declaration
(:meth:`~harness.formats.ArtifactFormat.call_problem`).

Only a binding mismatch is a config error. An artifact whose files are missing, are not the
manifest's (edited, rebuilt) or do not parse is skipped here: its cells report that as ``error``
with the cause, and the rest of the run goes on, as before this check existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.artifact import Artifact
from harness.bindings import Binding, BindingError
from harness.formats import ArtifactFormat, FormatError, WasmTypes, export_mismatches
from harness.formats.native_arity import HeaderError, native_arities
from harness.hosts.base import HostError, verify_artifact


def width_problem(artifact: Artifact) -> str | None:
    """What is wrong when ``artifact`` declares a pointer width, target or feature its files
    contradict (a manifest entry or profile table that names the wasm32 build as the wasm64 one,
    or ``ptr_width = 32`` for a Memory64 module); None when they agree, or when the files cannot
    be read as the manifest's (those are the cells' errors).

    Said before the binding's export check: with the wrong width every export's pointer
    arguments mismatch, and blaming the (correct) binding would hide the real mistake."""
    try:
        verify_artifact(artifact)
        found = artifact.fmt.ptr_width_of(artifact.paths())
    except (HostError, FormatError, OSError):
        return None
    if found is None:
        return None
    path = artifact.paths()[artifact.fmt.exports_role or artifact.fmt.roles[0]]
    if artifact.format == "native":
        is_ = f"{path} is an ELF{found} library"
    else:
        is_ = f"{path}'s linear memory is {found}-bit" + (" (Memory64)" if found == 64 else "")
    if artifact.ptr_width != found:
        return (
            f"ptr_width = {artifact.ptr_width}, but {is_}: the entry names another build, or "
            "its width is wrong"
        )
    said = [f"target {artifact.target!r}"] * (f"wasm{96 - found}" in artifact.target)
    said += ["features list 'memory64'"] * ("memory64" in artifact.features and found == 32)
    if said:
        return (
            f"{' and '.join(said)}, but {is_}: the entry names a {found}-bit build where it "
            f"claims a {96 - found}-bit one (or its target is wrong)"
        )
    return None


def check_artifact(artifact: Artifact) -> str:
    """Raise BindingError (``file:line: ...``) unless every export ``artifact``'s binding calls
    is in its module with the bound types (a native one: its arity); return quietly if its files
    cannot be read as the manifest's (those are the cells' errors).

    Returns what the argument check rests on when the module's exports carry no types (a native
    library: ``arity checked from DWARF ...`` or ``arity unchecked: no DWARF, no header``), else
    "" (a wasm type section shows every argument).
    """
    try:
        verify_artifact(artifact)  # not the manifest's files: a per-cell error, never exit 2
        found = artifact.fmt.exports_found(artifact.paths())
    except (HostError, OSError):
        return ""
    if found is None:  # the format cannot list its exports without loading
        return ""
    so = artifact.paths()[artifact.fmt.exports_role]
    module = f"artifact {artifact.name} ({so})"
    binding = artifact.bound()
    binding.check_exports(found, artifact.ptr_width, module)
    _check_allocator(artifact, binding, found, module)
    _check_calls(artifact.fmt, artifact.paths(), binding, module)
    if artifact.format != "native":
        # wasm: its type section showed arity and kinds above; webgpu: kernels.toml declares
        # every op's arguments, and each call was just compared with it
        return ""
    return _check_arities(binding, so, module)


def _check_calls(
    fmt: ArtifactFormat, files: Mapping[str, Path], binding: Binding, module: str
) -> None:
    """Each op and model call of the binding against the format's own declaration of the
    export it names (:meth:`~harness.formats.ArtifactFormat.call_problem`; most formats declare
    none). Call by call, not export by export: two calls of one export are both compared, where
    the binding's signature table keeps only one of them."""
    for section, calls in (("ops", binding.ops), ("model", binding.model)):
        for call in calls.values():
            at = binding.where((section, call.op))
            problem = fmt.call_problem(
                files, call.export, call.signature, call.args, f"{call.op} ({at})"
            )
            if problem is None:
                continue
            blame, what = problem
            if blame == "result":  # kernels.toml's own line and words
                raise BindingError(what)
            where = binding.where((section, call.op, "args"))
            raise BindingError(f"{where}: export {call.export!r} of {module} {what}")


def _check_allocator(
    artifact: Artifact, binding: Binding, found: Mapping[str, WasmTypes | None], module: str
) -> None:
    """The format's allocator (emscripten's ``malloc``/``free``), which a binding without
    ``[memory]`` leaves to it, must be exported too: without it every cell fails alike, the same
    build mistake as a missing bound export, so the same exit 2."""
    bound = binding.signatures()
    extra = {n: s for n, s in artifact.exports().items() if n not in bound}
    misses = export_mismatches(found, extra, artifact.ptr_width)
    if misses:
        names = ", ".join(repr(m.name) for m in misses)
        raise BindingError(
            f"{binding.path}: the {artifact.format} format's allocator ({names}), which this "
            f"binding uses (it has no [memory]), is not exported by {module} with its types: "
            "export it from the build, or name the library's own allocator in the binding's "
            "[memory] (docs/bindings.md)"
        )


def _check_arities(binding: Binding, so: Path, module: str) -> str:
    """Each bound export's argument count against the DWARF/header prototypes; the status."""
    try:
        arities = native_arities(so, binding.header)
    except HeaderError as exc:
        raise BindingError(f"{binding.where(('binding', 'header'))}: {exc}") from None
    signatures = binding.signatures()
    unchecked = []
    for name, sig in signatures.items():
        protos = arities.each(name)
        if not protos:
            unchecked.append(name)
        for source, p in protos:
            n = len(sig.params)
            if n == p.arity or (p.variadic and n >= p.arity):
                continue
            takes = f"at least {p.arity}" if p.variadic else str(p.arity)
            raise BindingError(
                f"{binding.export_line(name, 'args')}: export {name!r} takes {takes} arguments "
                f"in {module} ({source}: declared at {p.where}), the binding gives it {n} "
                f"({' '.join(sig.params) or 'none'})"
            )
    return arities.status(len(signatures), unchecked if arities.sources else [])


def check_artifacts(artifacts: Iterable[Artifact]) -> dict[str, str]:
    """:func:`check_artifact` for each of ``artifacts`` (the first mismatch raises); each
    artifact's non-empty status by name."""
    out = {}
    for artifact in artifacts:
        status = check_artifact(artifact)
        if status:
            out[artifact.name] = status
    return out
