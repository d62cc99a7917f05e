"""How every figure draws a series: the one owner of colours, markers, facets and noisy points.

The rules (issue 14): at most :data:`MAX_SERIES` series on one axis, so the cells are split into
facets by host family, then by artifact; every series on an axis has its own colour and marker;
legends sit outside the data; a noisy point (CI wider than ±10 % of its median) is drawn hollow
and is never part of a line, so no segment suggests a trend the samples do not support.

Each drawn artist carries a ``gid`` saying what it is (``series:<label>``, ``noisy:<label>``,
``ref:<name>``, ``note``), so tests read a figure through matplotlib's object model.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")  # files only: never a window, works on headless CI
import numpy as np
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FuncFormatter, LogFormatter, NullFormatter, NullLocator

from harness.rundir.rows import REFERENCE_HOST

MAX_SERIES = 8
# tab10, then the dark shades of tab20b: 15 colours that stay apart on white.
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
)  # fmt: skip
MARKERS: tuple[str, ...] = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "h")
V8_HOSTS = ("node", "chromium")  # host-name prefixes that run V8 (Liftoff, then TurboFan)
NOISY_LABEL = "hollow: noisy (CI > ±10 % of the median)"
SERIES, NOISY, REF, NOTE = "series:", "noisy:", "ref:", "note"

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Style:
    """How one series is drawn."""

    color: str
    marker: str
    linestyle: str = "-"


def assign_styles(keys: Sequence[K]) -> dict[K, Style]:
    """One colour and one marker per key, in order; colour+marker pairs never repeat below 30.

    Call it with every series key a report can draw (not one axis's), so a cell keeps its colour
    from figure to figure; :func:`axis_styles` resolves any clash left on a single axis.
    """
    return {
        k: Style(PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, k in enumerate(keys)
    }


def axis_styles(keys: Sequence[K], preferred: dict[K, Style]) -> dict[K, Style]:
    """The styles of one axis: ``preferred``, unless its colour or marker is taken on the axis.

    A taken one is swapped for the first free one, so no colour and no marker repeats on an
    axis of up to :data:`MAX_SERIES` series.
    """
    out: dict[K, Style] = {}
    colors: set[str] = set()
    markers: set[str] = set()
    for k in keys:
        style = preferred.get(k) or Style(PALETTE[len(out) % len(PALETTE)], MARKERS[0])
        color, marker = style.color, style.marker
        if color in colors:
            color = next((c for c in PALETTE if c not in colors), color)
        if marker in markers:
            marker = next((m for m in MARKERS if m not in markers), marker)
        colors.add(color)
        markers.add(marker)
        out[k] = Style(color, marker, style.linestyle)
    return out


def host_family(host: str) -> str:
    """The facet a host belongs to: V8 hosts compile lazily and share an engine.

    The numpy reference, a yardstick on its own scale, gets its own facet where it is drawn.
    """
    if host == REFERENCE_HOST:
        return "numpy reference (yardstick)"
    return "V8 hosts (Node, Chromium)" if host.startswith(V8_HOSTS) else "native and wasmtime"


def facets(
    keys: Sequence[K],
    family: Callable[[K], str],
    artifact: Callable[[K], str],
    max_series: int = MAX_SERIES,
    per_key: int = 1,
) -> list[tuple[str, list[K]]]:
    """Split ``keys`` into titled panels of at most ``max_series`` series.

    By family first; a family that is still too big is split by artifact (artifacts packed
    together while they fit), and an artifact that is still too big into numbered parts.
    ``per_key`` is how many series each key draws on an axis (e.g. 2 for KV on and off).
    """
    room = max(1, max_series // per_key)
    by_family: dict[str, list[K]] = {}
    for k in keys:
        by_family.setdefault(family(k), []).append(k)
    panels: list[tuple[str, list[K]]] = []
    for fam in sorted(by_family):
        members = by_family[fam]
        if len(members) <= room:
            panels.append((fam, members))
            continue
        by_art: dict[str, list[K]] = {}
        for k in members:
            by_art.setdefault(artifact(k), []).append(k)
        packed: list[tuple[list[str], list[K]]] = []
        for art in sorted(by_art):
            group = by_art[art]
            for start in range(0, len(group), room):
                chunk = group[start : start + room]
                part = art if len(group) <= room else f"{art} part {start // room + 1}"
                if packed and len(packed[-1][1]) + len(chunk) <= room:
                    packed[-1][0].append(part)
                    packed[-1][1].extend(chunk)
                else:
                    packed.append(([part], list(chunk)))
        panels += [(f"{fam}: {', '.join(arts)}", ks) for arts, ks in packed]
    return panels


def draw_series(
    ax: Any,
    x: np.ndarray,
    y: np.ndarray,
    noisy: np.ndarray,
    style: Style,
    label: str,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
) -> None:
    """One series: clean points joined (a line breaks at a noisy one), noisy points hollow.

    ``lo``/``hi`` are the CI bounds drawn as error bars on every point, noisy or not.
    """
    if not np.isfinite(y).any():  # every point skipped (budget spent): no empty legend entry
        return
    order = np.argsort(x, kind="stable")
    x, y, noisy = x[order], y[order], noisy[order].astype(bool)
    if lo is not None and hi is not None:
        lo, hi = lo[order], hi[order]
        yerr = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
        yerr = np.where(np.isfinite(yerr), yerr, 0.0)
        bars = ax.errorbar(x, y, yerr=yerr, fmt="none", ecolor=style.color, capsize=2.5, lw=0.9)
        for part in bars.get_children():  # caps (Line2D, no line) and bars (LineCollection)
            part.set_gid(f"ci:{label}")
    # NaN at a noisy point breaks the line there: no segment reaches a noisy point.
    clean_y = np.where(noisy, np.nan, y)
    ax.plot(
        x, clean_y, color=style.color, marker=style.marker, ls=style.linestyle, ms=5, lw=1.4,
        label=label, gid=SERIES + label,
    )  # fmt: skip
    if noisy.any():
        ax.plot(
            x[noisy], y[noisy], ls="none", marker=style.marker, mfc="white", mec=style.color,
            mew=1.4, ms=8, label="_nolegend_", gid=NOISY + label, zorder=5,
        )  # fmt: skip


class _Plain(LogFormatter):
    """Log-axis labels as plain numbers (40, not 4×10¹), with an optional unit suffix."""

    def __init__(self, suffix: str = "", minor: bool = False) -> None:
        super().__init__(minor_thresholds=(1.2, 0.5) if minor else None)
        self.suffix = suffix

    def __call__(self, x: float, pos: int | None = None) -> str:
        # The parent decides which ticks get a label; the text is ours.
        return plain_number(x) + self.suffix if super().__call__(x, pos) else ""


def plain_number(x: float) -> str:
    """0.01, 3, 40, 400k, 2M: short and without exponents where a reader wants none."""
    if float(x).is_integer() and abs(x) < 1e6:
        return str(int(x)) if abs(x) < 1e4 or x % 1000 else f"{int(x) // 1000}k"  # 65536, 40k
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(x) >= scale:
            return f"{x / (scale if unit != 'k' else 1e3):.3g}{unit}"
    return f"{x:g}"


def data_ticks(ax: Any, values: Any) -> None:
    """Tick a log x axis at the measured sizes themselves (8, 32, 56), when there are few."""
    ticks = sorted({float(v) for v in values if np.isfinite(v) and v > 0})
    if 0 < len(ticks) <= 8:
        ax.set_xticks(ticks, [plain_number(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())


def plain_log_labels(ax: Any, suffix: str = "", axis: str = "y") -> None:
    """Tick labels of a log axis as plain numbers; minor ones only within about a decade.

    A base-2 x axis (sizes, context lengths) is labelled at its powers of two only.
    """
    if axis == "x":
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: plain_number(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        return
    ax.yaxis.set_major_formatter(_Plain(suffix))
    ax.yaxis.set_minor_formatter(_Plain(suffix, minor=True))


def noisy_note(ax: Any) -> None:
    """A legend entry explaining hollow markers (no data)."""
    ax.plot([], [], ls="none", marker="o", mfc="white", mec="black", label=NOISY_LABEL, gid=NOTE)


def reference_line(ax: Any, x: Any, y: Any, label: str, name: str) -> None:
    """A black dashed yardstick (roofline, parity): not a series, never coloured like one."""
    ax.plot(x, y, color="black", ls="--", lw=1.5, label=label, gid=REF + name)


def legend_right(ax: Any, shared: Sequence[Any] = ()) -> None:
    """The axis's legend right of it, outside the data.

    With ``shared`` axes (a row of panels drawing the same series), it lists every entry of
    them all, once: one legend for the row.
    """
    entries: dict[str, Any] = {}
    for a in (*shared, ax) if shared else (ax,):
        for handle, label in zip(*a.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    ax.legend(
        list(entries.values()), list(entries), fontsize=7, loc="upper left",
        bbox_to_anchor=(1.03, 1.0), frameon=False, borderaxespad=0.0, handlelength=2.6,
    )  # fmt: skip


def finish_axis(ax: Any, ylabel: str, title: str) -> None:
    """A curve panel's common finish: y label, title, grid, the hollow-marker note, the legend."""
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    noisy_note(ax)
    legend_right(ax)


def reserve_footer(fig: Figure, inches: float) -> None:
    """Keep ``inches`` at the bottom of a constrained-layout figure free for a footer text."""
    engine = fig.get_layout_engine()
    if not isinstance(engine, ConstrainedLayoutEngine):
        raise TypeError("reserve_footer needs a figure made with layout='constrained'")
    share = inches / fig.get_figheight()
    engine.set(rect=(0, share, 1, 1 - share))
