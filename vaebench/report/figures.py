"""Report figures drawn with matplotlib (object API, Agg canvas: no display, no global state).

Lines take the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), distinguishable
under the common colour-vision deficiencies, and a line style per eight combinations, so that
more lines than colours stay apart and the figures survive greyscale printing.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from vaebench.report.figdata import CurveSummary, KlBars, RocCurve

OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#000000", "#F0E442")
LINE_STYLES = ("-", "--", ":", "-.")
GREY = "#999999"
DPI = 110
# Early losses can be many times the later ones; the y-axis then starts at this fraction of
# training so the part where combinations differ stays readable (the caption says so).
CURVE_CUT = 0.1
MIN_POINTS_AFTER_CUT = 4


def styles() -> Iterator[dict[str, Any]]:
    """Colour and line style for the i-th line: every colour solid, then every colour dashed..."""
    for style, colour in itertools.product(LINE_STYLES, OKABE_ITO):
        yield {"color": colour, "linestyle": style}


def text(label: str) -> str:
    """A label safe from matplotlib's mathtext (a ``$`` would start a formula)."""
    return label.replace("$", r"\$")


def _legend(fig: Figure, axes: Sequence, n: int) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(3, max(1, n)),
            fontsize="small",
            frameon=False,
        )


def learning_curves_figure(curves: Sequence[CurveSummary], title: str) -> tuple[Figure, bool]:
    """Training loss and validation -ELBO against step, and validation -ELBO against wall time.

    Returns the figure and whether the y-axes were cut to leave out the first steps.
    """
    height = 4.2 + 0.22 * math.ceil(len(curves) / 3)
    fig = Figure(figsize=(13, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 3)
    cut = False
    for curve, style in zip(curves, styles(), strict=False):
        name = f"{text(curve.label)} ({len(curve.seeds)} seed{'s' if len(curve.seeds) > 1 else ''})"
        for ax, x, mean, lo, hi in (
            (axes[0], curve.steps, curve.train_mean, curve.train_lo, curve.train_hi),
            (axes[1], curve.steps, curve.val_mean, curve.val_lo, curve.val_hi),
            (axes[2], curve.seconds, curve.val_mean, curve.val_lo, curve.val_hi),
        ):
            ax.plot(x, mean, label=name, marker="." if len(x) < 30 else None, **style)
            ax.fill_between(x, lo, hi, color=style["color"], alpha=0.18, linewidth=0)
    for ax, ylabel in zip(
        axes,
        ("training loss (nats)", "validation −ELBO (nats)", "validation −ELBO (nats)"),
        strict=True,
    ):
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        cut = _cut_top(ax, curves, ylabel.startswith("training")) or cut
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training step")
    axes[2].set_xlabel("wall time (s)")
    axes[0].set_title("training loss (−ELBO, 1 sample)")
    axes[1].set_title("validation −ELBO")
    axes[2].set_title("validation −ELBO against time")
    fig.suptitle(text(title))
    _legend(fig, axes, len(curves))
    return fig, cut


def _cut_top(ax, curves: Sequence[CurveSummary], train: bool) -> bool:  # type: ignore[no-untyped-def]
    """Cut the y-axis above the largest value after the first CURVE_CUT of training, when the
    first steps would otherwise squeeze the rest into less than half the axis."""
    late, everything = [], []
    for c in curves:
        hi, lo = (c.train_hi, c.train_lo) if train else (c.val_hi, c.val_lo)
        start = c.steps[0] + CURVE_CUT * (c.steps[-1] - c.steps[0])
        after = hi[np.isfinite(hi) & (c.steps >= start)]
        if len(after) < MIN_POINTS_AFTER_CUT:
            return False
        late.append(after)
        everything += [hi[np.isfinite(hi)], lo[np.isfinite(lo)]]
    if not late:
        return False
    top = np.concatenate(late).max()
    values = np.concatenate(everything)
    bottom, full = values.min(), values.max()
    if full - bottom <= 2 * (top - bottom):
        return False
    margin = 0.05 * max(top - bottom, 1e-9)
    ax.set_ylim(bottom - margin, top + margin)
    return True


def kl_figure(bars: KlBars, title: str) -> Figure:
    """Bars of KL per latent dimension and of activity per dimension, ranked by KL."""
    panels = [p for p in (bars.kl, bars.activity) if p is not None]
    fig = Figure(figsize=(5.5 * len(panels) + 1, 3.8), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    index = 0
    ranked_by = "KL" if bars.kl is not None else "activity"
    if bars.kl is not None:
        _bars(axes[index], bars.kl, OKABE_ITO[3])
        axes[index].set_ylabel("KL(q(z_d|x) ‖ p(z_d)) (nats)")
        axes[index].set_title("KL per latent dimension")
        index += 1
    if bars.activity is not None:
        ax = axes[index]
        _bars(ax, bars.activity, OKABE_ITO[0])
        ax.set_yscale("symlog", linthresh=max(bars.threshold or 1e-3, 1e-6))
        ax.set_ylabel("activity Var_x(E_q[z_d]) (latent units²)")
        if bars.threshold is not None:
            ax.axhline(
                bars.threshold,
                color="black",
                linestyle="--",
                linewidth=1,
                label=f"threshold {bars.threshold:g}",
            )
            ax.legend(fontsize="small", loc="upper right")
        counts = ", ".join(f"{a:g}" for a in bars.active)
        of = f"/{bars.of}" if bars.of else ""
        ax.set_title(f"activity per dimension; active units {counts}{of}")
    for ax in axes:
        ax.set_xlabel(f"latent dimension, ranked by {ranked_by} per seed")
        ax.grid(axis="y", alpha=0.3)
    seeds = len(bars.seeds)
    fig.suptitle(text(f"{title} (mean over {seeds} seed{'s' if seeds > 1 else ''}, bars: min-max)"))
    return fig


def _bars(ax, values: tuple[np.ndarray, np.ndarray, np.ndarray], colour: str) -> None:  # type: ignore[no-untyped-def]
    mean, lo, hi = values
    x = np.arange(1, len(mean) + 1)
    error = np.vstack([mean - lo, hi - mean])
    ax.bar(x, mean, color=colour, yerr=error, ecolor="black", capsize=2, linewidth=0)
    ax.set_xticks(x if len(x) <= 32 else x[:: math.ceil(len(x) / 16)])


def roc_figure(curves: Sequence[RocCurve], ood_set: str, score: str, title: str) -> Figure:
    """ROC per combination (seeds averaged vertically) with AUROC mean ± std in the legend."""
    fig = Figure(figsize=(7.5, 6.0 + 0.2 * len(curves)), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=1, label="chance (AUROC 0.5)")
    for curve, style in zip(curves, styles(), strict=False):
        spread = "" if math.isnan(curve.auroc_std) else f" ± {curve.auroc_std:.3f}"
        seeds = len(curve.seeds)
        name = f"{text(curve.label)}: AUROC {curve.auroc_mean:.3f}{spread} ({seeds} seed"
        name += "s)" if seeds > 1 else ")"
        ax.plot(np.r_[0.0, curve.fpr], np.r_[0.0, curve.tpr], label=name, **style)
    # A little room past 0 and 1, so a perfect detector's line is not hidden by the frame.
    ax.set_xlim(-0.01, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(f"false-positive rate (fraction of test images flagged, score {text(score)})")
    ax.set_ylabel(f"true-positive rate (fraction of {text(ood_set)} flagged)")
    ax.grid(alpha=0.3)
    ax.set_title(text(f"{title}\nOOD set {ood_set!r} against test, score {score}"))
    fig.legend(loc="outside lower center", fontsize="small", frameon=False)
    return fig


def grids_figure(samples: Path | None, recon: Path | None, title: str) -> Figure:
    """The saved sample and reconstruction grids side by side, pixel for pixel."""
    from matplotlib.image import imread

    panels = [
        (p, t)
        for p, t in (
            (samples, "prior samples (decoder mean)"),
            (recon, "test image | reconstruction (decoder mean)"),
        )
        if p is not None
    ]
    fig = Figure(figsize=(4.6 * len(panels), 5.0), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (path, caption) in zip(axes, panels, strict=True):
        image = imread(path)
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(caption, fontsize="medium")
        ax.set_axis_off()
    fig.suptitle(text(title))
    return fig


def to_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure rendered as ``png`` or ``pdf`` bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI, metadata={"Software": None} if fmt == "png" else None)
    return buffer.getvalue()
