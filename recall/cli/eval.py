"""`recall eval`: the arguments and the handler; cli.py owns the parser and supplies make_memory."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from recall.config.options import DEFAULT_BACKEND, add_backend_argument, add_overrides_argument
from recall.datasets.cases import DatasetError
from recall.datasets.formats import FORMATS
from recall.datasets.loading import load_dataset
from recall.errors import ConfigError, RecallError
from recall.eval.settings import PROTOCOLS, EvalSettings
from recall.interface import MemoryInterface

logger = logging.getLogger(__name__)

MakeMemory = Callable[[str, list[str]], MemoryInterface]

# --model is sugar for this override, so make_memory needs only (backend, overrides).
MODEL_OVERRIDE_KEY = "model.name"
# MEMIT and AlphaEdit batch 100 edits at a time; single and sequential default to one edit per call.
DEFAULT_BATCH_SIZE = {"single": 1, "batch": 100, "sequential": 1}

EVAL_DESCRIPTION = (
    "Evaluate a backend on a knowledge-editing benchmark: make the edits, then score reliability, "
    "generalization, locality, portability, retrieval and gate rates, generation and edit latency. "
    "Prints a markdown table and writes a JSON + markdown report."
)

EVAL_EPILOG = """\
examples:
  # 1000 zsRE edits made one after another, then all tested (WISE-style lifelong editing)
  recall eval --data ../shared/data/zsre/zsre_mend_eval_portability_gpt4.json --n 1000 \\
      --protocol sequential --backend lte

  # CounterFact in batches of 100 (MEMIT-style): edit a batch, test it, reset
  recall eval --data ../shared/data/counterfact/counterfact-edit.json --protocol batch --batch-size 100

  # a quick smoke run: 20 KnowEdit cases, one at a time, no generation
  recall eval --data ../shared/data/knowedit/ZsRE-test-all.json --n 20 --protocol single --no-generation

  # MQuAKE multi-hop: the first 100 records, each giving one case per edit; Port scores the
  # multi-hop questions once per record, after all edits (use sequential)
  recall eval --data ../shared/data/mquake/MQuAKE-CF_AKEW-subset.json --n 100 --protocol sequential

  # your own cases, one JSON object per line:
  #   {"prompt": "Who leads Acme?", "target": "Jane Doe", "rephrases": ["Acme's CEO is?"],
  #    "locality": [["Who wrote Hamlet?", "Shakespeare"]]}
  recall eval --data my_cases.jsonl --set sentinel.min_cosine=0.6

notes:
  --n takes the first n records in file order; add --shuffle to draw them with --seed instead.
  A record is one case, except in MQuAKE where it is one case per edit (1 to 4).
  Rel/Gen/Port are teacher-forced token accuracies and Loc is agreement with the unedited model
  (EasyEdit definitions), so they can sit beside published tables; gen_em is a stricter,
  generation-based view. Reports go to --out as eval-<data>-<backend>-<protocol>-n<N>-<time>.json/.md.
"""


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `recall eval` options to `parser` (and its description and examples, if it has none)."""
    if parser.description is None:
        parser.description = EVAL_DESCRIPTION
    if parser.epilog is None:
        parser.epilog = EVAL_EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' line breaks
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        metavar="N",
        help="use the first N records (default: all); an MQuAKE record gives one case per edit",
    )
    add_backend_argument(parser)
    parser.add_argument(
        "--out",
        default="reports",
        metavar="DIR",
        help="where to write the JSON and markdown report (default: reports)",
    )
    add_run_arguments(parser)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of how cases are run and scored, shared by `recall eval` and `recall report`."""
    parser.add_argument(
        "--data", required=True, metavar="FILE", help="benchmark file: a JSON list or JSON lines"
    )
    parser.add_argument(
        "--format",
        choices=("auto", *FORMATS),
        default="auto",
        help="record form (default: auto, decided from the first record's keys)",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="sequential",
        help="single: edit, test, reset per case; batch: the same per chunk; sequential (default): make "
        "every edit, then test all",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help="edits per add_many call (default: 100 for batch, 1 otherwise; with sequential, >1 adds "
        "cumulative chunks as AlphaEdit does)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for --shuffle, recorded in the report (default: 0)"
    )
    parser.add_argument(
        "--shuffle", action="store_true", help="shuffle all cases with --seed before taking --n"
    )
    parser.add_argument(
        "--no-generation",
        action="store_true",
        help="skip generated answers (exact match, fluency); much faster, token metrics are unchanged",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        metavar="N",
        help="cap on generated tokens (default: the memory's)",
    )
    parser.add_argument(
        "--long-form",
        action="store_true",
        help="score generated answers as long text too: ROUGE-L recall and MiniLM similarity against the "
        "target, for the question and its rephrase, with an answer budget that follows the target's length "
        "(on by default for UnKEBench)",
    )
    parser.add_argument(
        "--no-es-ps-ns",
        action="store_true",
        help="skip scoring the original answers, which CounterFact ES/PS/NS need",
    )
    add_overrides_argument(parser, "sentinel.min_cosine=0.6")
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help=f"model to edit (same as --set {MODEL_OVERRIDE_KEY}=NAME)",
    )
    parser.add_argument(
        "--target-words",
        default=None,
        metavar="LOW-HIGH",
        help="only records whose targets have LOW..HIGH words, e.g. 5-25 (long answers); --n counts those",
    )
    parser.add_argument(
        "--test-sample",
        type=int,
        default=None,
        metavar="N",
        help="with --protocol sequential: make every edit, then test only N cases spread evenly over them "
        "(testing costs ~10x editing; e.g. --n 10000 --test-sample 1000)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars on stderr")


def _fail(message: str, code: int) -> int:
    # One line, no traceback: these are the user's input or environment, not a bug.
    sys.stderr.write(f"recall eval: error: {' '.join(message.split())}\n")
    return code


def run_settings(args: argparse.Namespace, n: int | None) -> EvalSettings:
    """EvalSettings from the options add_run_arguments added, for the first n cases."""
    batch_size = args.batch_size if args.batch_size is not None else DEFAULT_BATCH_SIZE[args.protocol]
    return EvalSettings(
        protocol=args.protocol,
        batch_size=batch_size,
        n=n,
        seed=args.seed,
        generation=not args.no_generation,
        max_new_tokens=args.max_new_tokens,
        compare_probabilities=not args.no_es_ps_ns,
        long_form=args.long_form,
        test_sample=args.test_sample,
    )


def word_range(text: str | None) -> tuple[int, int] | None:
    """--target-words "5-25" as (5, 25)."""
    if text is None:
        return None
    low, sep, high = text.partition("-")
    if not (sep and low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high)):
        raise ConfigError(
            f"--target-words expected LOW-HIGH words with 1 <= LOW <= HIGH, e.g. 5-25, received {text!r}"
        )
    return int(low), int(high)


def run_overrides(args: argparse.Namespace) -> list[str]:
    """The --set overrides, with --model as the override it stands for."""
    overrides = list(args.overrides)
    if args.model is not None:
        overrides.append(f"{MODEL_OVERRIDE_KEY}={args.model}")
    return overrides


def command_line(argv: Sequence[str]) -> list[str]:
    return [Path(argv[0]).name if argv else "recall", *argv[1:]]


def run_eval_command(args: argparse.Namespace, make_memory: MakeMemory) -> int:
    """Load the cases, build the memory, run the protocol, write the report, print the table.

    Returns 0 on success, 2 for bad input (data file, format, settings, config), 1 when the memory
    cannot be built for another reason (e.g. a model that is not installed).
    """
    try:
        settings = run_settings(args, args.n)
        shuffle_seed = args.seed if args.shuffle else None
        words = word_range(args.target_words)
        dataset = load_dataset(args.data, args.format, args.n, shuffle_seed=shuffle_seed, target_words=words)
    except (DatasetError, ConfigError) as exc:
        return _fail(str(exc), 2)
    if not dataset.cases:
        return _fail(f"{dataset.path}: no usable records (every one was skipped)", 2)
    if dataset.format == "unke" and settings.generation and not settings.long_form:
        settings = dataclasses.replace(settings, long_form=True)  # UnKEBench is scored on long answers
    if settings.n is not None:
        # --n counted records; the protocol tests every case they gave (more than n for MQuAKE)
        settings = dataclasses.replace(settings, n=len(dataset.cases))
    if dataset.format == "mquake" and settings.protocol != "sequential":
        logger.warning(
            "MQuAKE multi-hop questions need all of a record's edits; protocol %s tests them with only "
            "some made, so Port is not MQuAKE's multi-hop accuracy (use --protocol sequential)",
            settings.protocol,
        )
    try:
        memory = make_memory(args.backend or DEFAULT_BACKEND, run_overrides(args))
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except RecallError as exc:
        return _fail(str(exc), 1)
    logger.info("loaded %d cases from %s (%s)", len(dataset.cases), dataset.path, dataset.format)
    # imported here: the model's libraries load when an evaluation runs, not when a parser is built
    from recall.eval.protocols import run_protocol
    from recall.eval.report import build_stamp, format_markdown, write_report

    result = run_protocol(memory, dataset.cases, settings, progress=not args.no_progress)
    stamp = build_stamp(memory.info(), dataset, settings, command_line(sys.argv), shuffle=args.shuffle)
    json_path, md_path = write_report(result, args.out, stamp)
    sys.stdout.write(format_markdown(result, stamp))
    sys.stderr.write(f"report: {json_path} and {md_path}\n")
    return 0
