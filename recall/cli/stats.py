"""`recall stats`: the second-moment statistics C of MLP output projection inputs that rome (and memit,
alphaedit) use, computed once per model, layer and corpus and cached beside the model cache."""

from __future__ import annotations

import argparse
import time

from recall.errors import ConfigError

STATS_DESCRIPTION = """\
Computes C = E[k kᵀ] over the inputs k of each named layer's MLP output projection, from an offline
corpus: the model's own text, sampled (top-40, fixed seed) after starters from many domains
(recall/locate/corpus.py; Wikipedia, which ROME's reference code reads, is not reachable offline).
Each layer is written once, with its token count, condition number and digest; a layer already cached
is only reported (--force recomputes it). `rome` computes a missing layer on first use; running this
first puts the wait here, with a progress bar.

SmolLM2-135M, 400 samples x 128 tokens (52,577 tokens with the starters, 34 per key dimension): 535 s
for layers 2,4,6,8 on one CPU thread beside two other jobs (sampling ~7 minutes, the statistics 100 s
for any set of layers: the forward pass stops at the highest one)."""


def add_stats_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="smollm2-135m", help="model name or directory (default: %(default)s)"
    )
    parser.add_argument("--layers", required=True, help="decoder layers, comma-separated (e.g. 3,4,5)")
    parser.add_argument("--samples", type=int, default=400, help="sampled texts (default: %(default)s)")
    parser.add_argument(
        "--length", type=int, default=128, help="tokens sampled per text (default: %(default)s)"
    )
    parser.add_argument("--force", action="store_true", help="recompute layers already cached")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _layers(text: str, count: int) -> list[int]:
    try:
        layers = sorted(
            {int(part) % count if -count <= int(part) < count else int(part) for part in text.split(",")}
        )
    except ValueError:
        raise ConfigError(f"--layers takes comma-separated integers, got {text!r}") from None
    bad = [layer for layer in layers if not 0 <= layer < count]
    if bad:
        raise ConfigError(f"--layers {bad} outside the model's {count} layers (0..{count - 1})")
    return layers


def run_stats(args: argparse.Namespace) -> int:
    from recall.lm.arch import num_layers
    from recall.lm.loading import load_lm
    from recall.locate.corpus import CorpusSpec
    from recall.locate.statistics import compute_moments, load_moment, stats_folder

    if args.samples < 1 or args.length < 1:
        raise ConfigError("--samples and --length must be >= 1")
    lm = load_lm(args.model, device=args.device)
    spec = CorpusSpec(args.samples, args.length)
    layers = _layers(args.layers, num_layers(lm.model))
    cached = {
        layer: m for layer in layers if not args.force and (m := load_moment(lm, layer, spec)) is not None
    }
    missing = [layer for layer in layers if layer not in cached]
    start = time.perf_counter()
    computed = (
        {m.layer: m for m in compute_moments(lm, missing, spec, progress=not args.no_progress)}
        if missing
        else {}
    )
    print(f"{lm.model_id}: statistics in {stats_folder(lm, spec)}")
    for layer in layers:
        state, moment = ("computed", computed[layer]) if layer in computed else ("cached", cached[layer])
        print(f"  {state:<8} {moment.describe()}")
    if missing:
        print(f"computed {len(missing)} layer(s) in {time.perf_counter() - start:.0f} s")
    return 0
