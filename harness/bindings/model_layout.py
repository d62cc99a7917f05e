"""A binding's model tables: the library's parameter layout, state format and training defaults.

A library with a model handle keeps its weights in its own flat buffer, in its own order and
layout, behind an export/import state of its own format, and trains with AdamW constants that
are often literals in its source. The binding file declares the three (docs/bindings.md):

- ``[model.params]``: the flat float32 buffer, tensor by tensor, each named as the library names
  it, with its shape in the model's dims (``vocab``, ``ctx``, ``C`` = d_model, ``F`` = d_mlp),
  the reference tensor it is (``reference.presets.PARAM_NAMES``), the part of a fused reference
  tensor it holds (``q``/``k``/``v`` of ``qkvw``/``qkvb``) and a Linear weight's layout
  (``in_out``: stored [in, out], the transpose of the reference's [out, in]). ``order`` says how
  the per-layer tensors (``layer``) sit between ``before`` and ``after``: ``layer_major`` (each
  layer's tensors together, layer after layer) or ``tensor_major`` (each tensor stacked over the
  layers, the reference's order). ``vocab`` is the one vocabulary the model accepts, if it has
  only one; ``lm_head = "wte"`` says the head is tied to wte without a bias, as the reference's.
- ``[model.state]``: ``header_bytes``, an optional ``magic``, and the ``sections`` that follow
  the header, each P little-endian float32 in the params layout (``params``, AdamW ``m``, ``v``).
- ``[model.defaults]``: where the defaults live when the binary does not report them: AdamW's
  ``beta1``, ``beta2``, ``eps``, ``weight_decay``, and the tensors it ``decayed`` (library names).

:func:`validate` checks the tables when the binding loads (``BindingError`` at ``file:line``,
through the loader's error factory); :func:`layout_of` gives the parsed :class:`ModelLayout` a
check uses. The reference side (``to_reference``) is where the model check imports a library's
exported weights into ``reference.model.GPT``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from harness.bindings.canonical import LAYOUTS
from reference.defaults import DEFAULTS, TrainingDefaults
from reference.presets import LINEARS, PARAM_NAMES, ModelConfig, param_shapes

if TYPE_CHECKING:  # the loader imports this module: no cycle at run time
    from harness.bindings import Binding

Where = tuple[str | int, ...]
ErrorAt = Callable[[Where, str], Exception]

ORDERS = ("layer_major", "tensor_major")
DIMS = ("vocab", "ctx", "C", "F")
# The reference's fused q|k|v tensors and the part names of their thirds (along the out axis).
FUSED = {"qkvw": ("q", "k", "v"), "qkvb": ("q", "k", "v")}
SECTIONS = ("params", "m", "v")
_PARAMS_KEYS = ("order", "vocab", "lm_head", "ln_eps", "before", "layer", "after")
_TENSOR_KEYS = ("name", "shape", "ref", "part", "layout")
_STATE_KEYS = ("header_bytes", "magic", "sections")
_DEFAULTS_KEYS = ("beta1", "beta2", "eps", "weight_decay", "decayed")


@dataclass(frozen=True)
class Tensor:
    """One tensor of the library's flat parameter buffer."""

    name: str  # the library's name
    shape: tuple[str, ...]  # dims from DIMS
    ref: str  # a reference.presets.PARAM_NAMES name
    part: str = ""  # q/k/v of a fused reference tensor
    layout: str = "out_in"  # a Linear weight stored in_out is the reference's transposed
    line: int = 0


@dataclass(frozen=True)
class ModelDims:
    """A model config in the canonical ``create`` call's terms."""

    vocab: int
    ctx: int
    n_layer: int
    n_head: int
    d_model: int
    d_mlp: int

    @classmethod
    def of(cls, cfg: ModelConfig) -> ModelDims:
        """The dims of the reference model ``cfg``."""
        return cls(
            cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.mlp_width
        )

    def reference_config(
        self, name: str = "bound", biases: tuple[str, ...] = LINEARS
    ) -> ModelConfig:
        """The reference model of these dims (every Linear biased unless ``biases`` says)."""
        return ModelConfig(
            name,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.d_model,
            block_size=self.ctx,
            vocab_size=self.vocab,
            d_mlp=self.d_mlp,
            biases=biases,
        )

    def size(self, dim: str) -> int:
        """The value of one DIMS symbol."""
        return {"vocab": self.vocab, "ctx": self.ctx, "C": self.d_model, "F": self.d_mlp}[dim]


# Dims of the config the tensor shapes are checked at: all distinct, so a swapped dim shows.
_PROBE = ModelDims(vocab=11, ctx=5, n_layer=2, n_head=1, d_model=3, d_mlp=7)
STACKED = frozenset(
    n for n, s in param_shapes(_PROBE.reference_config()).items() if s[0] == _PROBE.n_layer
)
"""Reference tensors stacked over layers (their leading axis is L)."""


@dataclass(frozen=True)
class ParamLayout:
    """``[model.params]``: where each reference tensor is in the library's flat buffer."""

    order: str
    before: tuple[Tensor, ...]
    layer: tuple[Tensor, ...]
    after: tuple[Tensor, ...]
    vocab: int | None = None  # the only vocabulary the library accepts; None: any
    lm_head: str = "wte"
    ln_eps: float | None = None  # the model's built-in LayerNorm epsilon; None: not declared

    def refs(self) -> frozenset[str]:
        """The reference tensors the layout maps (``reference.model`` names)."""
        return frozenset(t.ref for t in (*self.before, *self.layer, *self.after))

    def biases(self) -> tuple[str, ...]:
        """The reference Linears (``reference.presets.LINEARS``) whose bias the layout holds."""
        refs = self.refs()
        return tuple(lin for lin in LINEARS if f"{lin}b" in refs)

    def entries(self, d: ModelDims) -> list[tuple[Tensor, int | None, tuple[int, ...]]]:
        """``(tensor, layer or None, shape)`` in buffer order."""
        out: list[tuple[Tensor, int | None, tuple[int, ...]]]
        out = [(t, None, self.shape(t, d)) for t in self.before]
        if self.order == "layer_major":
            out += [(t, i, self.shape(t, d)) for i in range(d.n_layer) for t in self.layer]
        else:
            out += [(t, i, self.shape(t, d)) for t in self.layer for i in range(d.n_layer)]
        return out + [(t, None, self.shape(t, d)) for t in self.after]

    @staticmethod
    def shape(t: Tensor, d: ModelDims) -> tuple[int, ...]:
        """``t``'s shape at ``d``."""
        return tuple(d.size(s) for s in t.shape)

    def count(self, d: ModelDims) -> int:
        """The number of floats of the buffer at ``d``."""
        return sum(math.prod(s) for _, _, s in self.entries(d))

    def split(self, d: ModelDims, flat: NDArray[Any]) -> dict[tuple[str, int | None], NDArray[Any]]:
        """Cut a flat buffer into its tensors (views), keyed by ``(library name, layer)``."""
        want = self.count(d)
        if flat.ndim != 1 or flat.size != want:
            raise ValueError(f"a parameter buffer of {d} holds {want} floats, got {flat.shape}")
        out: dict[tuple[str, int | None], NDArray[Any]] = {}
        off = 0
        for t, layer, shape in self.entries(d):
            n = math.prod(shape)
            out[(t.name, layer)] = flat[off : off + n].reshape(shape)
            off += n
        return out

    def to_reference(
        self, cfg: ModelConfig, flat: NDArray[Any], dtype: type[np.floating[Any]]
    ) -> dict[str, NDArray[Any]]:
        """The library's flat parameters as ``reference.model.GPT``'s ``{name: array}``."""
        d = ModelDims.of(cfg)
        shapes = param_shapes(cfg)
        ref = {n: np.zeros(s, dtype=dtype) for n, s in shapes.items()}
        for (name, layer), arr in self.split(d, flat.astype(dtype)).items():
            t = self.tensor(name)
            value = arr.T if t.layout == "in_out" else arr
            target = ref[t.ref] if layer is None else ref[t.ref][layer]
            if t.part:
                k = FUSED[t.ref].index(t.part)
                rows = target.shape[0] // len(FUSED[t.ref])
                target = target[k * rows : (k + 1) * rows]
            target[...] = value
        return ref

    def from_reference(
        self, cfg: ModelConfig, ref: Mapping[str, NDArray[Any]], dtype: type[np.floating[Any]]
    ) -> NDArray[Any]:
        """The inverse of :meth:`to_reference`: reference tensors as the library's flat buffer
        (for a reference run's params or AdamW moments, compared in the library's layout)."""
        d = ModelDims.of(cfg)
        flat = np.zeros(self.count(d), dtype=dtype)
        for (name, layer), view in self.split(d, flat).items():
            t = self.tensor(name)
            source = ref[t.ref] if layer is None else ref[t.ref][layer]
            if t.part:
                k = FUSED[t.ref].index(t.part)
                rows = source.shape[0] // len(FUSED[t.ref])
                source = source[k * rows : (k + 1) * rows]
            view[...] = source.T if t.layout == "in_out" else source
        return flat

    def tensor(self, name: str) -> Tensor:
        """The tensor the library calls ``name``."""
        for t in (*self.before, *self.layer, *self.after):
            if t.name == name:
                return t
        raise KeyError(name)


@dataclass(frozen=True)
class StateFormat:
    """``[model.state]``: a header, then sections of P little-endian float32 each."""

    header_bytes: int
    sections: tuple[str, ...]
    magic: bytes = b""

    def size(self, n_params: int) -> int:
        """The state's bytes for ``n_params`` parameters."""
        return self.header_bytes + 4 * n_params * len(self.sections)

    def with_section(self, blob: bytes, n_params: int, section: str, values: NDArray[Any]) -> bytes:
        """``blob`` with ``section`` replaced by ``values`` (float32, little-endian)."""
        self.parse(blob, n_params)  # the same checks: size, magic
        i = self.sections.index(section)
        start = self.header_bytes + 4 * n_params * i
        new = np.ascontiguousarray(values, dtype="<f4").tobytes()
        if len(new) != 4 * n_params:
            raise ValueError(f"section {section!r} takes {n_params} floats, got {values.size}")
        return blob[:start] + new + blob[start + len(new) :]

    def parse(self, blob: bytes, n_params: int) -> dict[str, NDArray[np.float32]]:
        """Each section of ``blob`` as float32; ValueError naming what does not fit."""
        if len(blob) != self.size(n_params):
            raise ValueError(
                f"the state has {len(blob)} bytes; the binding's format gives "
                f"{self.header_bytes} + 4 x {n_params} x {len(self.sections)} = "
                f"{self.size(n_params)}"
            )
        if self.magic and blob[: len(self.magic)] != self.magic:
            raise ValueError(f"the state starts {blob[: len(self.magic)]!r}, not {self.magic!r}")
        floats = np.frombuffer(blob, dtype="<f4", offset=self.header_bytes).astype(np.float32)
        return {s: floats[i * n_params : (i + 1) * n_params] for i, s in enumerate(self.sections)}


@dataclass(frozen=True)
class LibraryDefaults:
    """``[model.defaults]``: the library's AdamW constants and decayed tensors."""

    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decayed: tuple[str, ...]  # library tensor names

    def training(self, grad_clip: float, learning_rate: float) -> TrainingDefaults:
        """The reference's TrainingDefaults with these constants (lr and clip are call args)."""
        return replace(
            DEFAULTS,
            beta1=self.beta1,
            beta2=self.beta2,
            eps=self.eps,
            weight_decay=self.weight_decay,
            grad_clip=grad_clip,
            learning_rate=learning_rate,
        )


@dataclass(frozen=True)
class ModelLayout:
    """A binding's validated model tables (each None where the binding has no such table)."""

    params: ParamLayout | None
    state: StateFormat | None
    defaults: LibraryDefaults | None

    def reference_decayed(self) -> frozenset[str]:
        """The reference tensors that take weight decay (validated: whole tensors only)."""
        if self.params is None or self.defaults is None:
            return frozenset()
        return frozenset(self.params.tensor(n).ref for n in self.defaults.decayed)


class UnsupportedConfig(ValueError):
    """The library cannot make a model of this preset; the message says why."""


def library_config(preset: ModelConfig, params: ParamLayout | None) -> tuple[ModelConfig, str]:
    """The reference config the library's model of ``preset`` is, and a note on any change.

    A library with one vocabulary (``[model.params] vocab``) runs the preset's architecture at
    that vocabulary when the preset's token ids fit in it: token ids are bytes
    (reference/presets.py), so a byte-level library reads a 7-bit preset's ids as they are and
    only its embedding has rows no token uses; both sides then hold a model of the library's
    vocabulary. :class:`UnsupportedConfig` for a preset the library's model cannot express:
    ids that do not fit, Linear biases other than the layout's, another LayerNorm epsilon than
    the declared one (the check makes it an ``incompatible`` row, as for tinygpt.h's model).
    """
    if params is not None:
        want = set(params.biases())
        if set(preset.biases) != want:
            raise UnsupportedConfig(
                f"preset {preset.name!r} has biases on {sorted(preset.biases)}; the library's "
                f"model ([model.params]) has them on {sorted(want)}"
            )
        if params.ln_eps is not None and preset.ln_eps != params.ln_eps:
            raise UnsupportedConfig(
                f"preset {preset.name!r} has LayerNorm eps {preset.ln_eps:g}; the library's "
                f"model has {params.ln_eps:g} built in ([model.params] ln_eps)"
            )
    vocab = params.vocab if params is not None else None
    if vocab is None or vocab == preset.vocab_size:
        return preset, ""
    if preset.vocab_size > vocab:
        raise UnsupportedConfig(
            f"the library's model takes only vocab {vocab} ([model.params] vocab); preset "
            f"{preset.name!r} has vocab {preset.vocab_size}, whose token ids do not fit"
        )
    note = (
        f"preset {preset.name!r} at the library's vocab {vocab} (its {preset.vocab_size} "
        f"token ids are a subset)"
    )
    return replace(preset, vocab_size=vocab), note


def layout_of(binding: Binding) -> ModelLayout:
    """The model tables of ``binding``, as validated when it loaded."""
    if binding.layout is None:  # a Binding built by hand, not by load_binding
        raise ValueError(f"binding {binding.name} has no validated [model.*] tables")
    return binding.layout


def validate(
    tables: Mapping[str, Any], error: ErrorAt, line_of: Callable[[Where], int] = lambda w: 0
) -> ModelLayout:
    """Check the ``[model.params]``, ``[model.state]`` and ``[model.defaults]`` tables.

    Raises what ``error(where, what)`` builds (the loader's BindingError with ``file:line``)
    for an unknown key, a value of the wrong type or range, a tensor whose shape or layout does
    not fit the reference tensor it names, a reference tensor covered twice or not at all, or a
    decayed tensor that is not in the layout.
    """
    params = _params(tables["params"], error, line_of) if "params" in tables else None
    state = _state(tables["state"], error) if "state" in tables else None
    defaults = _defaults(tables["defaults"], error, params) if "defaults" in tables else None
    return ModelLayout(params, state, defaults)


def _keys(where: Where, t: Mapping[str, Any], allowed: Sequence[str], error: ErrorAt) -> None:
    for key in t:
        if key not in allowed:
            raise error((*where, key), f"unknown key; allowed: {', '.join(allowed)}")


def _typed(
    where: Where, v: object, kind: type | tuple[type, ...], what: str, error: ErrorAt
) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(v, kinds) or isinstance(v, bool):
        raise error(where, f"must be {what}, got {v!r}")
    return v


def _params(raw: Mapping[str, Any], error: ErrorAt, line_of: Callable[[Where], int]) -> ParamLayout:
    w: Where = ("model", "params")
    _keys(w, raw, _PARAMS_KEYS, error)
    order = _typed((*w, "order"), raw.get("order"), str, f"one of {', '.join(ORDERS)}", error)
    if order not in ORDERS:
        raise error((*w, "order"), f"must be one of {', '.join(ORDERS)}, got {order!r}")
    vocab = raw.get("vocab")
    if vocab is not None:
        _typed((*w, "vocab"), vocab, int, "an integer", error)
        if vocab < 1:
            raise error((*w, "vocab"), f"must be >= 1, got {vocab}")
    ln_eps = raw.get("ln_eps")
    if ln_eps is not None:
        _typed((*w, "ln_eps"), ln_eps, (int, float), "a number", error)
        if not (0 < ln_eps < 1):
            raise error((*w, "ln_eps"), f"must be in (0, 1), got {ln_eps}")
    head = raw.get("lm_head", "wte")
    if head != "wte":
        raise error(
            (*w, "lm_head"), f"only 'wte' (tied, no bias: the reference's head), got {head!r}"
        )
    groups = {
        g: _tensors((*w, g), raw.get(g, []), error, line_of) for g in ("before", "layer", "after")
    }
    names = [t.name for g in groups.values() for t in g]
    for g, ts in groups.items():
        for i, t in enumerate(ts):
            if names.count(t.name) > 1:
                raise error((*w, g, i, "name"), f"tensor {t.name!r} is listed twice")
            stacked = t.ref in STACKED
            if stacked != (g == "layer"):
                where_ = (
                    "in 'layer' (the reference stacks it over layers)"
                    if stacked
                    else ("in 'before' or 'after' (the reference has one for the whole model)")
                )
                raise error((*w, g, i, "ref"), f"{t.ref!r} belongs {where_}")
    layout = ParamLayout(
        order, groups["before"], groups["layer"], groups["after"], vocab, head,
        None if ln_eps is None else float(ln_eps),
    )  # fmt: skip
    _cover(layout, w, error)
    return layout


def _tensors(
    where: Where, raw: object, error: ErrorAt, line_of: Callable[[Where], int]
) -> tuple[Tensor, ...]:
    _typed(where, raw, list, "an array of tensor tables", error)
    assert isinstance(raw, list)
    out = []
    for i, t in enumerate(raw):
        at: Where = (*where, i)
        _typed(at, t, dict, "a tensor table { name, shape, ref, [part], [layout] }", error)
        _keys(at, t, _TENSOR_KEYS, error)
        for key in ("name", "shape", "ref"):
            if key not in t:
                raise error(at, f"missing key {key!r}")
        name = _typed((*at, "name"), t["name"], str, "a string", error)
        shape = _typed((*at, "shape"), t["shape"], list, "an array of dims", error)
        for j, s in enumerate(shape):
            if s not in DIMS:
                raise error((*at, "shape", j), f"unknown dim {s!r}; dims: {', '.join(DIMS)}")
        ref = _typed((*at, "ref"), t["ref"], str, "a reference tensor name", error)
        if ref not in PARAM_NAMES:
            raise error(
                (*at, "ref"), f"unknown reference tensor {ref!r}; known: {', '.join(PARAM_NAMES)}"
            )
        part = _typed((*at, "part"), t.get("part", ""), str, "a part name", error)
        if part and part not in FUSED.get(ref, ()):
            parts = FUSED.get(ref)
            raise error(
                (*at, "part"),
                f"{ref!r} has no part {part!r}"
                + (f"; its parts: {', '.join(parts)}" if parts else " (it is not fused)"),
            )
        if not part and ref in FUSED:
            raise error(
                at, f"{ref!r} is fused ({'|'.join(FUSED[ref])}): say which 'part' {name!r} is"
            )
        layout = _typed((*at, "layout"), t.get("layout", "out_in"), str, "a layout", error)
        if layout not in LAYOUTS:
            raise error((*at, "layout"), f"must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if layout == "in_out" and len(shape) != 2:
            raise error((*at, "layout"), "only a 2-D Linear weight has an in_out layout")
        out.append(Tensor(name, tuple(shape), ref, part, layout, line_of(at)))
    return tuple(out)


def _cover(layout: ParamLayout, w: Where, error: ErrorAt) -> None:
    """Every reference tensor (of the biases the layout holds) covered exactly once, each piece
    the reference's shape."""
    cfg = _PROBE.reference_config(biases=layout.biases())
    shapes = param_shapes(cfg)
    seen: dict[str, list[str]] = {}
    for g, ts in (("before", layout.before), ("layer", layout.layer), ("after", layout.after)):
        for i, t in enumerate(ts):
            got = ParamLayout.shape(t, _PROBE)
            if t.layout == "in_out":
                got = got[::-1]
            want = shapes[t.ref][1:] if t.ref in STACKED else shapes[t.ref]
            if t.part:
                want = (want[0] // len(FUSED[t.ref]), *want[1:])
            if got != want:
                sym = ", ".join(t.shape)
                raise error(
                    (*w, g, i, "shape"),
                    (
                        f"{t.name} ({sym}) with layout {t.layout} is not a "
                        f"{'part of ' if t.part else ''}{t.ref}: at vocab {_PROBE.vocab}, ctx "
                        f"{_PROBE.ctx}, C {_PROBE.d_model}, F {_PROBE.d_mlp} it is {got} "
                        f"(reference [out, in] order), the reference's is {want}"
                    ),
                )
            pieces = seen.setdefault(t.ref, [])
            if (t.part or "whole") in pieces or (pieces and not t.part):
                raise error(
                    (*w, g, i, "ref"),
                    f"{t.ref!r}{' part ' + t.part if t.part else ''} is covered twice",
                )
            pieces.append(t.part or "whole")
    missing = [n for n in shapes if n not in seen]
    partial = [
        f"{n} ({'|'.join(p for p in FUSED[n] if p not in seen[n])})"
        for n in FUSED
        if n in seen and set(seen[n]) != set(FUSED[n])
    ]
    if missing or partial:
        raise error(
            w,
            "the layout does not cover the reference tensor(s) " + ", ".join([*missing, *partial]),
        )


def _state(raw: Mapping[str, Any], error: ErrorAt) -> StateFormat:
    w: Where = ("model", "state")
    _keys(w, raw, _STATE_KEYS, error)
    header = _typed((*w, "header_bytes"), raw.get("header_bytes"), int, "an integer", error)
    if header < 0 or header % 4:
        raise error(
            (*w, "header_bytes"), f"must be >= 0 and a multiple of 4 (floats follow), got {header}"
        )
    magic = _typed((*w, "magic"), raw.get("magic", ""), str, "a string", error)
    if len(magic.encode()) > header:
        raise error((*w, "magic"), f"{magic!r} does not fit the {header}-byte header")
    sections = _typed(
        (*w, "sections"), raw.get("sections"), list, "an array of section names", error
    )
    for i, s in enumerate(sections):
        if s not in SECTIONS:
            raise error((*w, "sections", i), f"unknown section {s!r}; known: {', '.join(SECTIONS)}")
        if sections.index(s) != i:
            raise error((*w, "sections", i), f"section {s!r} is listed twice")
    if "params" not in sections:
        raise error((*w, "sections"), "must include 'params'")
    return StateFormat(header, tuple(sections), magic.encode())


def _defaults(
    raw: Mapping[str, Any], error: ErrorAt, params: ParamLayout | None
) -> LibraryDefaults:
    w: Where = ("model", "defaults")
    _keys(w, raw, _DEFAULTS_KEYS, error)
    values: dict[str, float] = {}
    for key, low, high in (
        ("beta1", 0.0, 1.0),
        ("beta2", 0.0, 1.0),
        ("eps", 0.0, 1.0),
        ("weight_decay", 0.0, math.inf),
    ):
        if key not in raw:
            raise error(w, f"missing key {key!r}")
        v = float(_typed((*w, key), raw[key], (int, float), "a number", error))
        if not (low <= v < high) or (key == "eps" and v <= 0):
            raise error(
                (*w, key),
                f"must be in [{low}, {high}){' and > 0' if key == 'eps' else ''}, got {v}",
            )
        values[key] = v
    decayed = _typed(
        (*w, "decayed"), raw.get("decayed", []), list, "an array of tensor names", error
    )
    if params is None and decayed:
        raise error((*w, "decayed"), "names tensors, but the binding has no [model.params]")
    by_ref: dict[str, set[bool]] = {}
    for i, n in enumerate(decayed):
        assert params is not None
        try:
            params.tensor(n)
        except KeyError:
            raise error((*w, "decayed", i), f"{n!r} is not a tensor of [model.params]") from None
    if params is not None:
        for t in (*params.before, *params.layer, *params.after):
            by_ref.setdefault(t.ref, set()).add(t.name in decayed)
        mixed = sorted(r for r, s in by_ref.items() if len(s) > 1)
        if mixed:
            raise error(
                (*w, "decayed"),
                f"decays only some parts of {', '.join(mixed)}: the "
                "reference decays whole tensors, so it cannot replay that",
            )
    return LibraryDefaults(
        values["beta1"], values["beta2"], values["eps"], values["weight_decay"], tuple(decayed)
    )
