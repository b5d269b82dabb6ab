"""`python -m training {lte,recipe} [--config FILE] [--set key=value] [--fresh]` (also `recall train ...`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from recall.errors import RecallError

RECIPES = ("lte", "recipe", "relevance")

EPILOG = """\
lte writes to output_dir (default runs/lte-smollm2-135m): checkpoint.pt (every
checkpoint_every steps and on Ctrl-C) and adapter/ with training.json (config, data mix, validation
log, time). recipe writes checkpoint.pt and model/ (recipe_config.json, recipe.safetensors,
training.json). relevance writes probe/ (relevance.safetensors, training.json). With bundle_as, the
result is also copied into recall/adapters/<name>, which `--backend lte_aligned` / `--backend recipe`
use. Running the same command again resumes lte and recipe from their checkpoint. Each shipped recipe
takes under an hour on 2 CPU cores (relevance 10-15 minutes); `--set device=cuda` trains on a GPU (recipe:
under a minute on one H100).

examples:
  python -m training lte                                   # the shipped recipe (configs/train/lte_lora.yaml)
  python -m training recipe                                # RECIPE (configs/train/recipe.yaml)
  python -m training recipe --set device=cuda              # RECIPE on a GPU
  python -m training relevance                             # the aligned model's relevance probe
  python -m training relevance --config configs/train/relevance.yaml   # the plain model's (recipe's)
  python -m training lte --set counterfact_records=200 --set output_dir=runs/small --set bundle_as=null
  recall train recipe --fresh                              # the same, through the recall command
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=(
            "Train recall's backends. `lte` fine-tunes a LoRA adapter (r=8 on q_proj/v_proj) so the model "
            "answers from the [Updated Information] block when it applies and ignores it otherwise "
            "(LTE, METHODS.md §2). `relevance` fits the probe with which that aligned model declines an "
            "admitted edit it would not use (with configs/train/relevance.yaml, the plain model's probe, "
            "which the recipe preset uses). `recipe` trains RECIPE's knowledge model for the frozen model: "
            "MLP_K/MLP_Q over MiniLM, the prompt head and the knowledge sentinel (METHODS.md §1). "
            "Data: the zsRE, CounterFact and KnowEdit train splits under ../shared/data; cases whose "
            "prompt occurs in an evaluation split are left out."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "recipe",
        choices=RECIPES,
        help="lte: LoRA alignment to the edit template (LTE); relevance: a relevance probe (the aligned "
        "model's by default, the plain model's with configs/train/relevance.yaml); recipe: RECIPE's "
        "knowledge model",
    )
    parser.add_argument(
        "--config",
        help="a YAML file or a bundled config name (default: configs/train/lte_lora.yaml for lte, "
        "configs/train/recipe.yaml for recipe, configs/train/lte_relevance.yaml for relevance; "
        "configs/train/relevance.yaml fits the probe of the plain model)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set counterfact_records=200 (repeatable)",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from training import lte, recipe, relevance
    from training.config import load_train_config

    try:
        config = load_train_config(args.config, args.overrides, args.recipe)
        runs: dict[str, Callable[..., Path]] = {
            "lte": lte.run,
            "recipe": recipe.run,
            "relevance": relevance.run,
        }
        command = " ".join(
            [f"python -m training {args.recipe}"]
            + ([f"--config {args.config}"] if args.config else [])
            + [f"--set {override}" for override in args.overrides]
        )
        runs[args.recipe](config, fresh=args.fresh, command=command)
    except RecallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the checkpoint is saved; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
