"""The diagnostic's PNGs (matplotlib, drawn off screen): a histogram of P's off-diagonal per layer, the
statistics against depth, and interference against the number of edits."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from recall.diagnose.superposition import LayerSuperposition
from recall.plotting import pyplot


def histograms(model: str, layers: Sequence[LayerSuperposition], file: Path) -> None:
    """One panel per layer: the off-diagonal entries of P, clipped to ±4 standard deviations of the
    first layer's so the panels share an x-axis, with each layer's kurtosis in its title."""
    plt = pyplot()
    columns = min(6, len(layers))
    rows = math.ceil(len(layers) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.0 * rows), squeeze=False)
    span = 4 * max(s.std for s in layers)
    for axis, stats in zip(axes.flat, layers, strict=False):
        axis.hist([min(max(v, -span), span) for v in stats.values], bins=60, range=(-span, span))
        axis.set_title(f"layer {stats.layer}: kurtosis {stats.kurtosis:.1f}", fontsize=8)
        axis.tick_params(labelsize=6)
    for axis in list(axes.flat)[len(layers) :]:
        axis.axis("off")
    figure.suptitle(
        f"{model}: p(k_i, k_j) = k_i C^-1 k_j / k_i C^-1 k_i, off-diagonal, per layer", fontsize=10
    )
    figure.tight_layout()
    figure.savefig(file, dpi=110)
    plt.close(figure)


def depth(models: Mapping[str, Sequence[LayerSuperposition]], file: Path) -> None:
    """Kurtosis, standard deviation and mean whitened angle against relative depth, one line a model."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for model, layers in models.items():
        count = max(s.layer for s in layers) + 1
        x = [s.layer / max(count - 1, 1) for s in layers]
        axes[0].plot(x, [s.kurtosis for s in layers], marker="o", markersize=3, label=model)
        axes[1].plot(x, [s.std for s in layers], marker="o", markersize=3, label=model)
        axes[2].plot(x, [s.angle for s in layers], marker="o", markersize=3, label=model)
    for axis, title in zip(
        axes, ("excess kurtosis of p", "std of p", "mean whitened angle (deg)"), strict=True
    ):
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("relative depth (layer / last layer)", fontsize=8)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(file, dpi=110)
    plt.close(figure)


def interference_curves(model: str, curves: Mapping[str, Sequence[float]], file: Path) -> None:
    """Mean ||ΔW k|| / ||W₀ k|| over unrelated keys after T edits, one line a backend."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for backend, values in curves.items():
        axis.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=backend)
    axis.set_xlabel("sequential edits T")
    axis.set_ylabel("||ΔW k|| / ||W0 k||, unrelated keys")
    axis.set_title(f"{model}: how far the edits move keys they were not about", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(file, dpi=110)
    plt.close(figure)
