"""A comparison's PNGs: accuracy, speed and the gate against T, one line per backend, the peer rows as
hollow markers (measured elsewhere), each figure stamped with what it was made from and its command."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recall.eval.comparison import shown_value
from recall.eval.peers import PeerRow
from recall.plotting import pyplot, stamp

# (summary key, panel title)
_ACCURACY = (
    ("Rel", "Rel: the edit's own question, %"),
    ("Gen", "Gen: its rephrases, %"),
    ("Loc", "Loc: unrelated questions unchanged, %"),
    ("Port", "Port: questions that follow from it, %"),
    ("gen_em", "generated answer = target, %"),
    ("lf_rouge_l", "long form: Rouge-L recall, question, %"),
    ("lf_rouge_l_rephrase", "long form: Rouge-L recall, rephrase, %"),
    ("lf_similarity", "long form: MiniLM similarity, question, %"),
)
_GATE = (
    ("gate_false_accept_loc", "false accepts: unrelated question admitted to an edit, %"),
    ("gate_false_reject_rephrase", "false rejects: rephrase's own edit not admitted, %"),
)
_PEER_MARKERS = ("s", "^", "D", "v", "P", "X", "*", "h")

Document = Mapping[str, Any]


def _series(documents: Sequence[Document], value: Any) -> dict[str, tuple[list[int], list[float]]]:
    """backend -> (Ts, values) in T order, for the cells where `value(document)` is not None."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for document in sorted(documents, key=lambda d: int(d["cell"]["n"])):
        y = value(document)
        if y is None:
            continue
        xs, ys = series.setdefault(str(document["cell"]["backend"]), ([], []))
        xs.append(int(document["cell"]["n"]))
        ys.append(float(y))
    return series


def _peer_series(rows: Sequence[PeerRow], value: Any) -> dict[str, tuple[list[int], list[float]]]:
    """ "tool method" -> (Ts, values), for the rows where `value(row)` is not None."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in sorted(rows, key=lambda r: r.n):
        y = value(row)
        if y is not None:
            xs, ys = series.setdefault(f"{row.tool} {row.method}", ([], []))
            xs.append(row.n)
            ys.append(float(y))
    return series


def _panel(
    axis: Any,
    title: str,
    ours: Mapping[str, tuple[list[int], list[float]]],
    peers: Mapping[str, tuple[list[int], list[float]]],
    ns: Sequence[int],
) -> None:
    for backend, (xs, ys) in ours.items():
        axis.plot(xs, ys, marker="o", markersize=4, linewidth=1.5, label=backend)
    for index, (method, (xs, ys)) in enumerate(peers.items()):
        axis.plot(
            xs,
            ys,
            marker=_PEER_MARKERS[index % len(_PEER_MARKERS)],
            markersize=6,
            markerfacecolor="none",
            linestyle=":",
            linewidth=0.8,
            color="0.45",
            label=f"{method} (measured elsewhere)",
        )
    if len(ns) > 1 and max(ns) / min(ns) >= 10:
        axis.set_xscale("log")
    axis.set_xticks(list(ns))
    axis.set_xticklabels([str(n) for n in ns], fontsize=7)
    axis.tick_params(labelsize=7)
    axis.set_xlabel("T (edits in memory)", fontsize=7)
    axis.set_title(title, fontsize=8)
    axis.grid(alpha=0.3)


def _grid_figure(panels: int, columns: int = 4) -> tuple[Any, list[Any], Any]:
    plt = pyplot()
    columns = min(columns, panels)
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows + 0.9), squeeze=False)
    flat = list(axes.flat)
    for axis in flat[panels:]:
        axis.axis("off")
    return figure, flat[:panels], plt


def _save(plt: Any, figure: Any, axes: Sequence[Any], lines: list[str], file: Path) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    for axis in axes[1:]:  # a peer may be on one panel only (no Port, no s/edit): gather every label
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    stamp(figure, lines)
    # Beside the panels, not over a curve; the saved image grows to hold it.
    figure.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    figure.savefig(file, dpi=110, bbox_inches="tight")
    plt.close(figure)


def accuracy_figure(
    documents: Sequence[Document], peers: Sequence[PeerRow], lines: list[str], file: Path
) -> bool:
    """Rel, Gen, Loc, Port (and generated / long-form scores when measured) against T. False when no cell
    measured any of them (nothing drawn)."""
    ns = sorted({int(d["cell"]["n"]) for d in documents})
    panels = []
    for key, title in _ACCURACY:
        ours = _series(documents, lambda d, k=key: d.get("summary", {}).get(k))
        if ours:
            peer_key = key if key in ("Rel", "Gen", "Loc", "Port") else None
            theirs = _peer_series(peers, lambda r, k=peer_key: r.metrics.get(k) if k else None)
            panels.append((title, ours, theirs))
    if not panels:
        return False
    figure, axes, plt = _grid_figure(len(panels), columns=2 if len(panels) == 4 else 3)
    for axis, (title, ours, theirs) in zip(axes, panels, strict=True):
        _panel(axis, title, ours, theirs, ns)
        axis.set_ylim(-3, 103)
    _save(plt, figure, axes, lines, file)
    return True


def speed_figure(
    documents: Sequence[Document], peers: Sequence[PeerRow], lines: list[str], file: Path
) -> bool:
    """Seconds per edit (p50; the peers' s/edit), ask latency when answers were generated, and the
    cell's whole evaluation time, against T."""
    ns = sorted({int(d["cell"]["n"]) for d in documents})
    edit = _series(documents, lambda d: _seconds(d.get("summary", {}).get("edit_latency_p50_ms")))
    ask = _series(documents, lambda d: d.get("summary", {}).get("ask_latency_mean_ms"))
    total = _series(documents, lambda d: _minutes(d.get("timings_s", {}).get("total")))
    panels = [("edit time, p50, s (log)", edit, _peer_series(peers, lambda r: r.s_per_edit))]
    if ask:
        panels.append(("ask latency, mean over edit prompts, ms", ask, {}))
    panels.append(("evaluation time of the cell, min", total, {}))
    figure, axes, plt = _grid_figure(len(panels), columns=3)
    for axis, (title, ours, theirs) in zip(axes, panels, strict=True):
        _panel(axis, title, ours, theirs, ns)
    axes[0].set_yscale("log")
    _save(plt, figure, axes, lines, file)
    return True


def gate_figure(documents: Sequence[Document], lines: list[str], file: Path) -> bool:
    """False accepts and false rejects of the retrieval gate against T, for the backends that answer
    from retrieved hits; False (nothing drawn) when none does."""
    ns = sorted({int(d["cell"]["n"]) for d in documents})
    panels = []
    for key, title in _GATE:
        ours = _series(documents, lambda d, k=key: shown_value(d, k))
        if ours:
            panels.append((title, ours))
    if not panels:
        return False
    figure, axes, plt = _grid_figure(len(panels), columns=2)
    for axis, (title, ours) in zip(axes, panels, strict=True):
        _panel(axis, title, ours, {}, ns)
    _save(plt, figure, axes, lines, file)
    return True


def _seconds(milliseconds: Any) -> float | None:
    return None if milliseconds is None else float(milliseconds) / 1000.0


def _minutes(seconds: Any) -> float | None:
    return None if seconds is None else float(seconds) / 60.0


# file name -> caption
FIGURES = {
    "accuracy.png": "Rel / Gen / Loc / Port against T, per backend; hollow grey markers: peers on the same "
    "model and records, measured elsewhere",
    "speed.png": "seconds per edit (p50; the peers' s/edit as hollow markers), ask latency and each cell's "
    "evaluation time against T",
    "gate.png": "the retrieval gate's false accepts (locality) and false rejects (rephrases) against T",
}


def draw_figures(
    documents: Sequence[Document], peers: Sequence[PeerRow], lines: list[str], out_dir: Path
) -> dict[str, str]:
    """Write the PNGs under out_dir; file name -> caption for those drawn."""
    drawn = {
        "accuracy.png": accuracy_figure(documents, peers, lines, out_dir / "accuracy.png"),
        "speed.png": speed_figure(documents, peers, lines, out_dir / "speed.png"),
        "gate.png": gate_figure(documents, lines, out_dir / "gate.png"),
    }
    return {name: FIGURES[name] for name, done in drawn.items() if done}
