"""`recall diagnose superposition`: the knowledge-superposition statistics of a model's knowledge keys at
every layer (recall/diagnose/superposition.py), and, with --backend, how far sequential weight edits move
the keys they were not about."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recall.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from recall.lm.loading import LanguageModel

DATA = Path(__file__).parent.parent / "data"
DEFAULT_KEYS = (DATA / "counterfact_sample.json", DATA / "zsre_sample.json")

DIAGNOSE_DESCRIPTION = """\
Knowledge in superposition (Hu et al. 2024, arXiv 2408.07413), measured on your model. A closed-form
weight edit (ROME, MEMIT, AlphaEdit) for key k_i moves the output of another key k_j by
p(k_i, k_j) = k_i C^-1 k_j / k_i C^-1 k_i times the edit's change: edits only leave each other alone when
knowledge keys are orthogonal after whitening by the statistics C. For the subjects of the bundled
CounterFact and ZsRE samples (150 prompts; --data for your own), at each layer's MLP output projection:
the mean, standard deviation and excess kurtosis of P's off-diagonal, its share beyond 3 standard
deviations (0.27% for a Gaussian), and the mean whitened angle. The paper finds a zero mean, a heavy
tail (high kurtosis), and more superposition (a wider P) deeper in the model and in smaller models.

With --backend rome,memit,alphaedit: T sequential edits of the bundled ZsRE sample in a throw-away
memory, and after each one the mean ||dW k|| / ||W0 k|| over the CounterFact keys (unrelated to the
edits) at the edited layers: how interference grows with T.

Statistics come from `recall stats` (computed here for any layer that lacks them: SmolLM2-135M's 30
layers take about 12 minutes on one CPU thread). Writes superposition-<model>.json/.md and PNGs under
--out."""


def add_diagnose_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("superposition",), help="the diagnostic to run")
    parser.add_argument(
        "--model", default="smollm2-135m", help="model name or directory (default: %(default)s)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        help="a ZsRE or CounterFact file whose prompts and subjects give the keys (repeatable; default: "
        "the bundled samples)",
    )
    parser.add_argument(
        "--backend",
        default="",
        help="comma-separated weight editors to measure interference for (e.g. rome,memit,alphaedit)",
    )
    parser.add_argument(
        "--edits", type=int, default=20, help="sequential edits T with --backend (default: 20)"
    )
    parser.add_argument(
        "--samples", type=int, default=400, help="statistics: sampled texts, as recall stats (default: 400)"
    )
    parser.add_argument(
        "--length", type=int, default=128, help="statistics: tokens per text, as recall stats (default: 128)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("reports"), help="report directory (default: reports)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_diagnose(args: argparse.Namespace) -> int:
    from recall.datasets.loading import load_dataset
    from recall.diagnose import plots
    from recall.diagnose.superposition import subject_keys, superposition
    from recall.lm.arch import num_layers
    from recall.lm.loading import load_lm
    from recall.locate.corpus import CorpusSpec
    from recall.locate.statistics import compute_moments, load_moment

    if not 1 <= args.edits <= 50:
        raise ConfigError(f"--edits takes 1 to 50 (the bundled ZsRE sample), got {args.edits}")
    lm = load_lm(args.model, device=args.device)
    if args.samples < 1 or args.length < 1:
        raise ConfigError("--samples and --length must be >= 1")
    spec = CorpusSpec(args.samples, args.length)
    layers = list(range(num_layers(lm.model)))
    moments = {layer: m for layer in layers if (m := load_moment(lm, layer, spec)) is not None}
    missing = [layer for layer in layers if layer not in moments]
    if missing:
        print(f"computing statistics for {len(missing)} layer(s) of {lm.model_id} (cached for next time)")
        moments.update(
            (m.layer, m) for m in compute_moments(lm, missing, spec, progress=not args.no_progress)
        )
    items: list[tuple[str, str]] = []
    for file in args.data or DEFAULT_KEYS:
        cases = load_dataset(file).cases
        items += [(c.prompt, c.subject) for c in cases if c.subject and c.subject in c.prompt]
    if len(items) < 10:
        raise ConfigError(f"{len(items)} prompts name their subject; the statistics need at least 10")
    start = time.perf_counter()
    keys = subject_keys(lm, items, layers)
    stats = [superposition(layer, keys[layer], moments[layer].matrix) for layer in layers]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"superposition-{Path(lm.model_id).name}"  # a model directory: its name
    plots.histograms(lm.model_id, stats, stem.with_name(stem.name + "-hist.png"))
    plots.depth({lm.model_id: stats}, stem.with_name(stem.name + "-depth.png"))
    report: dict[str, Any] = {
        "model": lm.model_id,
        "keys": len(items),
        "statistics": moments[0].corpus,
        "layers": [{k: v for k, v in asdict(s).items() if k != "values"} for s in stats],
    }
    curves = {}
    for backend in [b.strip() for b in args.backend.split(",") if b.strip()]:
        curves[backend] = _interference(lm, args.model, backend, keys, args.edits, not args.no_progress)
    if curves:
        plots.interference_curves(lm.model_id, curves, stem.with_name(stem.name + "-interference.png"))
        report["interference"] = curves
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    table = _markdown(report)
    stem.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    print(
        f"{len(items)} keys x {len(layers)} layers in {time.perf_counter() - start:.0f} s; "
        f"report: {stem}.json/.md, PNGs beside"
    )
    return 0


def _interference(
    lm: LanguageModel, model: str, backend: str, keys: dict[int, torch.Tensor], edits: int, progress: bool
) -> list[float]:
    """Mean ||ΔW k|| / ||W₀ k|| over the CounterFact keys at the edited layers after each of `edits`
    sequential edits of the bundled ZsRE sample (keys read on the base model)."""
    from tqdm import tqdm

    from recall.backends.weight_editor import WeightEditor
    from recall.config import load_config
    from recall.datasets.loading import load_dataset
    from recall.diagnose.superposition import interference
    from recall.lm.hooks import layer_path
    from recall.memory import EditMemory

    cases = [c for c in load_dataset(DEFAULT_KEYS[1]).cases if c.subject and c.subject in c.prompt][:edits]
    unrelated = len([c for c in load_dataset(DEFAULT_KEYS[0]).cases if c.subject and c.subject in c.prompt])
    with EditMemory.temporary(
        load_config(backend=backend, overrides=[f"model.name={model}"]), lm=lm
    ) as memory:
        editor = memory.backend
        if not isinstance(editor, WeightEditor):
            raise ConfigError(
                f"--backend {backend}: interference is measured for the weight editors "
                "(rome, ft, memit, alphaedit)"
            )
        layer_of = {layer_path(lm.model, "mlp_out", layer): layer for layer in keys}
        curve = []
        for case in tqdm(cases, desc=f"{backend} edits", disable=not progress):
            memory.add(case.prompt, case.target, case.subject, policy="keep_both")
            values = [
                interference(editor.base[p], w.detach().cpu(), keys[layer_of[p]][:unrelated])
                for p, w in editor.weights.items()
            ]
            curve.append(sum(values) / len(values))
    return curve


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Knowledge superposition: {report['model']}",
        "",
        f"{report['keys']} knowledge keys (subject's last token, MLP output projection input); "
        f"C: {report['statistics']}.",
        "p(k_i, k_j) = k_i C⁻¹ k_j / k_i C⁻¹ k_i, off-diagonal entries.",
        "",
        "| layer | mean | std | excess kurtosis | beyond 3σ | whitened angle |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report["layers"]:
        lines.append(
            f"| {s['layer']} | {s['mean']:+.4f} | {s['std']:.4f} | {s['kurtosis']:.2f} "
            f"| {100 * s['tail']:.2f}% | {s['angle']:.1f}° |"
        )
    for backend, curve in report.get("interference", {}).items():
        marks = ", ".join(f"T={t}: {curve[t - 1]:.4f}" for t in (1, 5, 10, 20, 50) if t <= len(curve))
        lines += ["", f"{backend}: mean ||ΔW k|| / ||W₀ k|| on unrelated keys, {marks}"]
    return "\n".join(lines) + "\n"
