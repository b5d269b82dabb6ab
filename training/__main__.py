"""`python -m training lte [--config FILE] [--set key=value] [--fresh]` (also `recall train lte`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from recall.errors import RecallError

RECIPES = ("lte",)

EPILOG = """\
The run writes to output_dir (default runs/lte-smollm2-135m): base_answers.json, checkpoint.pt
(every checkpoint_every steps and on Ctrl-C) and adapter/ with training.json (config, data mix,
validation log, time). With bundle_as, the adapter is also copied into recall/adapters/<name>,
which `--backend lte_aligned` uses. Running the same command again resumes from the checkpoint.
The default recipe takes ~50 minutes on 2 CPU cores.

examples:
  python -m training lte                                   # the shipped recipe (configs/train/lte_lora.yaml)
  python -m training lte --set counterfact_records=200 --set output_dir=runs/small --set bundle_as=null
  recall train lte --fresh                                 # the same, through the recall command
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=(
            "Train recall's backends. `lte` fine-tunes a LoRA adapter (r=8 on q_proj/v_proj) so the model "
            "answers from the [Updated Information] block when it applies and ignores it otherwise "
            "(LTE, METHODS.md §2). Data: the zsRE, CounterFact and KnowEdit train splits under "
            "../shared/data; cases whose prompt occurs in an evaluation split are left out."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("recipe", choices=RECIPES, help="lte: LoRA alignment to the edit template (LTE)")
    parser.add_argument(
        "--config", help="a YAML file or a bundled recipe name (default: configs/train/lte_lora.yaml)"
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
    from training.config import load_train_config
    from training.lte import run

    try:
        config = load_train_config(args.config, args.overrides)
        run(config, fresh=args.fresh)
    except RecallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the checkpoint is saved; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
