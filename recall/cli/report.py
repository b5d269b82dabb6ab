"""`recall report`: several backends over several T on one data file, side by side, with plots."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from recall.backends import registered_backends
from recall.cli.eval import (
    MakeMemory,
    add_run_arguments,
    command_line,
    run_overrides,
    run_settings,
    word_range,
)
from recall.config.schema import preset_names
from recall.datasets.cases import DatasetError
from recall.datasets.loading import load_dataset
from recall.errors import ConfigError, RecallError
from recall.eval.comparison import comparison_dict, format_comparison, stamp_line, write_comparison
from recall.eval.figures import draw_figures
from recall.eval.grid import GridPlan, run_grid
from recall.eval.peers import BUNDLED_PEERS, load_peers

REPORT_DESCRIPTION = """\
Runs `recall eval` for every backend at every T (the first T records, a fresh memory each) on one data
file and writes one folder: report.md and report.json (every cell side by side), accuracy.png,
speed.png and gate.png (against T, one line per backend), and cells/<backend>-n<T>.json/.md (each
cell's eval report, with the `recall eval` command that makes it alone; its per-case rows in
cells/<backend>-n<T>.rows.json).
It resumes: a cell is saved when it finishes, and a rerun with the same options keeps every finished
cell and runs only the rest (a cell saved with other options is refused; --redo runs all again).
EasyEdit's editors measured on SmolLM2-135M and the first 10 / 100 zsRE eval records
(recall/data/peers-easyedit-smollm2-135m.json) appear beside runs on those exact bytes, marked as
measured elsewhere.
"""

REPORT_EPILOG = """\
examples:
  # every retrieval backend at T = 10, 100, 1000 on zsRE, token metrics only (about 2 CPU-hours)
  recall report --data ../shared/data/zsre/zsre_mend_eval_portability_gpt4.json \\
      --backends recipe,lte_aligned,grace_retrieval --n 10,100,1000 --no-generation --no-es-ps-ns

  # the weight editors beside EasyEdit's rows (s/edit is measured too)
  recall report --data ../shared/data/zsre/zsre_mend_eval_portability_gpt4.json \\
      --backends rome,memit,alphaedit,ft --n 10,100 --no-generation --out reports/weights

  # CounterFact at 10,000 edits, 1,000 of them tested
  recall report --data ../shared/data/counterfact/counterfact-edit.json --backends recipe,lte_aligned \\
      --n 1000,10000 --test-sample 1000 --no-generation --no-es-ps-ns

notes:
  --set applies to every backend. Cells run by T, every backend at one T before the next. Interrupt
  it at any time: the finished cells stay, and the same command picks up where it stopped.
"""


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `recall report` options to `parser` (and its description and examples, if it has none)."""
    if parser.description is None:
        parser.description = REPORT_DESCRIPTION
    if parser.epilog is None:
        parser.epilog = REPORT_EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' line breaks
    parser.add_argument(
        "--backends",
        default="recipe,lte_aligned",
        metavar="A,B,...",
        help="backends to compare, comma-separated (default: recipe,lte_aligned)",
    )
    parser.add_argument(
        "--n",
        default="10,100",
        metavar="T,T,...",
        help="numbers of edits, comma-separated: each cell edits the first T records (default: 10,100)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="the report folder, reused to resume (default: reports/report-<data file>-<protocol>)",
    )
    parser.add_argument(
        "--peers",
        type=Path,
        default=BUNDLED_PEERS,
        metavar="FILE",
        help="peer rows measured elsewhere (default: the bundled EasyEdit rows on SmolLM2-135M / zsRE)",
    )
    parser.add_argument("--no-peers", action="store_true", help="show recall's cells only")
    parser.add_argument("--redo", action="store_true", help="run every cell again, even finished ones")
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="run nothing: write the report from the cells already finished (e.g. while the same "
        "command runs in another terminal)",
    )
    add_run_arguments(parser)


_HOW_IT_RUNS = {"--finished-only", "--redo", "--no-progress"}


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"recall report: error: {' '.join(message.split())}\n")
    return code


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _counts(text: str) -> tuple[int, ...]:
    parts = _names(text)
    if not parts or not all(part.isdigit() for part in parts):
        raise ConfigError(
            f"--n expected numbers of edits separated by commas, e.g. 10,100,1000; received {text!r}"
        )
    return tuple(int(part) for part in parts)


def _plan(args: argparse.Namespace) -> GridPlan:
    """The comparison the options ask for; the data file is read once here so that a bad file or format
    fails before any model loads."""
    settings = run_settings(args, None)
    backends = _names(args.backends)
    known = sorted({*preset_names(), *registered_backends()})
    unknown = [name for name in backends if name not in known]
    if unknown:
        raise ConfigError(f"unknown backend {', '.join(unknown)}; choose from {', '.join(known)}")
    shuffle_seed = args.seed if args.shuffle else None
    words = word_range(args.target_words)
    ns = _counts(args.n)
    dataset = load_dataset(args.data, args.format, min(ns), shuffle_seed=shuffle_seed, target_words=words)
    if dataset.format == "unke" and settings.generation and not settings.long_form:
        settings = dataclasses.replace(settings, long_form=True)  # UnKEBench is scored on long answers
    return GridPlan(
        data=Path(args.data),
        backends=backends,
        ns=ns,
        settings=settings,
        format=dataset.format,
        overrides=tuple(run_overrides(args)),
        shuffle_seed=shuffle_seed,
        target_words=words,
    )


def run_report_command(args: argparse.Namespace, make_memory: MakeMemory) -> int:
    """Run or resume every cell, then write the comparison (markdown, JSON, PNGs) and print its table.

    Returns 0 on success, 2 for bad input (options, data file, a cell folder made with other options),
    1 when a memory cannot be built (e.g. a model that is not installed)."""
    try:
        plan = _plan(args)
        peers = None if args.no_peers else load_peers(args.peers)
    except (DatasetError, ConfigError) as exc:
        return _fail(str(exc), 2)
    out = args.out or Path("reports") / f"report-{plan.data.stem}-{plan.settings.protocol}"
    try:
        documents = run_grid(
            plan, out, make_memory, progress=not args.no_progress, redo=args.redo, run=not args.finished_only
        )
    except (DatasetError, ConfigError) as exc:
        return _fail(str(exc), 2)
    except RecallError as exc:
        return _fail(str(exc), 1)
    if not documents:
        return _fail(f"{out}: no finished cell of this comparison yet (drop --finished-only to run them)", 2)
    first = documents[0]["stamp"]
    peer_rows = (
        ()
        if peers is None
        else peers.matching(
            data_sha256=str(first["data"]["sha256"]),
            model=str(first["memory"].get("model")),
            protocol=plan.settings.protocol,
        )
    )
    peer_rows = tuple(row for row in peer_rows if row.n in plan.ns)  # beside recall's own T only
    # What makes this report from nothing: options that only decide what runs now are left out.
    the_command = shlex.join(a for a in command_line(sys.argv) if a not in _HOW_IT_RUNS)
    lines = [stamp_line(documents), f"made by: {the_command}"]
    figures = draw_figures(documents, peer_rows, lines, out)
    markdown = format_comparison(documents, peers, peer_rows, command_line=the_command, figures=figures)
    document = comparison_dict(documents, peers, peer_rows, command_line=the_command, figures=list(figures))
    json_path, md_path = write_comparison(out, document, markdown)
    sys.stdout.write(markdown)
    sys.stderr.write(f"report: {md_path}, {json_path} and {', '.join(str(out / f) for f in figures)}\n")
    return 0
