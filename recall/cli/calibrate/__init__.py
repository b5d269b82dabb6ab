"""recall calibrate: the sentinel threshold, the review margin and the conflict cut-offs (its arguments
and dispatch; each mode in its own module, imported when run: they load torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

CALIBRATE_DESCRIPTION = (
    "Without --review: fit the fixed sentinel's cosine threshold (base.yaml) on ZsRE. With "
    "--review: make the file's edits with --backend's preset (recipe), and print false rejects on "
    "rephrases, false accepts on locality questions and the share reviewed for each margin and "
    "review_within and subject_margin. With --current: pairs of edits, the same fact reworded with "
    "another answer and another fact, each in a namespace of its own: how often the later answers and "
    "how often the first is wrongly superseded. With --conflicts: with --backend's encoder (lte: "
    "MiniLM), the share of question pairs about the same fact, about the same subject, and of the "
    "nearest edit about another subject at or above each cosine, to set conflict.min_cosine and "
    "conflict.similar_cosine. Use train or val data, never an evaluation split."
)
CALIBRATE_EPILOG = (
    "examples:\n"
    "  recall calibrate --data ../shared/data/zsre/zsre_mend_train_1k.json\n"
    "  recall calibrate --conflicts --data ../shared/data/knowedit/wiki_counterfact_train_cf.json\n"
    "  recall calibrate --review --data ../shared/data/counterfact/counterfact-val.json\n"
    "  recall calibrate --current --n 300 --data ../shared/data/counterfact/counterfact-val.json"
)


def add_calibrate_arguments(calibrate: argparse.ArgumentParser) -> None:
    from recall.config.options import add_backend_argument, add_overrides_argument
    from recall.datasets.formats import FORMATS

    calibrate.add_argument("--data", type=Path, required=True, help="a train or val file (never eval!)")
    mode = calibrate.add_mutually_exclusive_group()
    mode.add_argument(
        "--review", action="store_true", help="tabulate sentinel.margin x retrieval.review_within"
    )
    mode.add_argument(
        "--conflicts", action="store_true", help="tabulate question-key cosines for the conflict cut-offs"
    )
    mode.add_argument(
        "--current",
        action="store_true",
        help="pairs of edits: how often the later of two edits of one fact answers, and how often an "
        "edit of another fact overrides the first",
    )
    add_backend_argument(calibrate, "lte for the threshold and --conflicts, recipe with --review")
    calibrate.add_argument(
        "--format",
        default="auto",
        choices=("auto", *FORMATS),
        help="with --review or --conflicts: the record form (default: auto)",
    )
    calibrate.add_argument(
        "--sample", type=int, default=500, help="with --review: rephrases and locality questions each"
    )
    add_overrides_argument(calibrate)
    calibrate.add_argument("--n", type=int, default=1000, help="records to use (default: %(default)s)")
    calibrate.add_argument(
        "--target-false-accept",
        type=float,
        default=0.01,
        help="largest share of out-of-scope questions admitted (default: %(default)s)",
    )


def run_calibrate_command(args: argparse.Namespace) -> int:
    if args.conflicts:
        from recall.cli.calibrate.conflicts import run_calibrate_conflicts

        return run_calibrate_conflicts(
            args.backend or "lte", args.overrides, args.data, args.format, n=args.n, device=args.device
        )
    if args.current:
        from recall.cli.calibrate.current import run_calibrate_current

        return run_calibrate_current(
            args.backend or "recipe", args.overrides, args.data, args.format, n=args.n, device=args.device
        )
    if args.review:
        from recall.cli.calibrate.review import run_calibrate_review

        return run_calibrate_review(
            args.backend or "recipe",
            args.overrides,
            args.data,
            args.format,
            n=args.n,
            sample=args.sample,
            device=args.device,
        )
    from recall.cli.calibrate.threshold import run_calibrate

    return run_calibrate(
        args.data, n=args.n, target_false_accept=args.target_false_accept, device=args.device
    )
