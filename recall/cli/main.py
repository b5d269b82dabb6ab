"""The `recall` command: argument parsing only; each subcommand delegates to its module."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from recall.lm.devices import add_device_argument
from recall.paths import default_memory_dir

if TYPE_CHECKING:
    from recall.memory import EditMemory

DESCRIPTION = """\
recall: teach a language model new or corrected facts, one edit at a time.
Edits are durable, listable, supersedable and forgettable; every answer says which edit shaped it.
"""

EPILOG = """\
examples:
  recall demo                                   # a 2-minute tour on the embedded SmolLM2
  recall edit "Who is the CEO of Acme?" "Jane Doe"
  recall ask "Who runs Acme?" --why             # the answer and the edit behind it
  recall list                                   # active edits of the default namespace
  recall forget 3f2a9c1e                        # an id prefix from `recall list`
  recall restore 3f2a9c1e                       # undo a forget or a supersede
  recall conflicts                              # active edits that answer one question two ways
  recall repl                                   # an interactive shell
  recall eval --data ../shared/data/zsre/zsre_mend_eval_portability_gpt4.json --n 100
  recall report --data ../shared/data/zsre/zsre_mend_eval_portability_gpt4.json --backends recipe,rome
  recall bench                                  # edit and ask latency, JSON + markdown
  recall serve --memory ~/facts                 # an OpenAI-compatible server with edit endpoints
  recall train lte                              # LoRA alignment (LTE), ~35 min on 2 CPU cores
  recall train relevance                        # the aligned model's relevance probe, ~10 min
  recall train recipe                           # RECIPE knowledge model, ~55 min on 2 CPU cores
  recall repl --backend lte_aligned --memory ~/aligned   # a new memory on the LoRA-aligned model

Without --memory, edit/ask/list/forget/restore/conflicts/history/repl use the persistent memory at
{memory} (set $RECALL_DATA_DIR to move it).
"""


# Measured with `recall bench --backend B --edits N` (its "forget newest/oldest" lines), SmolLM2-135M,
# one CPU thread, another job on the second core.
FORGET_DESCRIPTION = """\
Retracts one edit: it stays in the store's history (`recall history`, `recall restore` brings it
back), and the model answers as if it had never been made. What that costs depends on the backend:
- recipe, lte, lte_aligned: nothing to undo in the model (instant);
- grace, grace_retrieval: the codebook is rebuilt from the remaining entries, no training (instant);
- rome, ft: weight edits do not commute, each was computed on the weights the edits before it left.
  The stored deltas of the edits before the forgotten one are re-added and every edit after it is
  recomputed, so the weights are bitwise those of a memory that never saw it. Forgetting the newest
  edit re-adds the stored deltas (rome, 9 of them: 0.01 s; ft, 99: 0.20 s); forgetting the oldest
  recomputes every other edit (rome at 10 edits: 55 s, about 7 s an edit; ft at 100 edits: 262 s,
  about 2.7 s an edit). At 1000 edits that is about 2 hours for rome and 45 minutes for ft: forget
  recent edits, or start a new memory.
- memit, alphaedit: the same replay over batches (an add_many call is one batch, an add a batch of
  one): the batch that held the edit is solved again without it (each of its other edits' z trained
  again), and so is every batch after it; the batches before it are re-added as stored. Measured with
  batches of one (`recall bench --backend memit --edits 6`): the newest 0.01 s, the oldest of the 5 left
  20.2 s (memit) and 22.9 s (alphaedit) for 4 recomputed, about 5-6 s an edit on one CPU thread.
"""


EXPORT_DESCRIPTION = """\
Writes an embedded model as a plain Hugging Face folder: the dequantized float32 weights recall runs,
the tokenizer and chat template, the config without the GGUF quantization entry, and a generation
config that decodes greedily and stops where recall stops. Serving engines load it (`vllm serve DIR
--enable-prompt-embeds`, `transformers serve`), and `recall serve --generator openai|vllm` then sends
its generation there.
"""


# `recall bench --help` (recall.cli.bench is not imported here: it loads torch). Its numbers are
# recall.cli.bench.SAMPLE_CASES and ANSWER_TOKENS; a test checks they agree.
BENCH_DESCRIPTION = """\
Times the two operations a user waits for, on the embedded model, in a throw-away memory:
- edit: one durable `add` (encode, store, fsync); the memory gets --edits of them, the 50 bundled
  zsRE sample edits first, then synthetic ones;
- ask: retrieval, the gate, the review and generation of exactly 16 new tokens for the rephrase of a
  stored edit, beside the base model answering the same question without memory. The two alternate,
  so machine noise hits both alike;
- unrelated question: the same for the sample's locality questions, which no edit should answer (the
  memory searches, the gate keeps the edits out, the base model answers).
"ask overhead" is the p50 difference as a share of the base model's p50: what the memory adds to an
answer, when it uses an edit and when it does not. Writes bench-<time>.json and .md under --out. A busy
machine moves timings by a few percent between runs, and the base model's own speed moves the shares:
run it twice, and compare the milliseconds too.
`recall bench serve` load-tests `recall serve` on loopback instead: one client alone, then --clients
asking and --editors editing for --seconds; p50/p99, throughput, errors, and every acknowledged edit
checked afterwards (JSON, markdown and a latency PNG).
"""


def _add_memory_args(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    parser.add_argument(
        "--memory",
        type=Path,
        default=None,
        metavar="DIR",
        help="memory directory (default: the persistent user memory)",
    )
    if namespace:
        parser.add_argument("--namespace", default="default", help="edit namespace (default: %(default)s)")
    add_device_argument(parser)


def build_parser() -> argparse.ArgumentParser:
    from recall.cli.bench_serve import add_load_arguments
    from recall.cli.calibrate import CALIBRATE_DESCRIPTION, CALIBRATE_EPILOG, add_calibrate_arguments
    from recall.cli.diagnose import DIAGNOSE_DESCRIPTION, add_diagnose_arguments
    from recall.cli.eval import add_eval_arguments
    from recall.cli.report import add_report_arguments
    from recall.cli.serve import SERVE_DESCRIPTION, SERVE_EPILOG, add_serve_arguments
    from recall.cli.stats import STATS_DESCRIPTION, add_stats_arguments
    from recall.config.options import add_backend_argument, add_overrides_argument
    from recall.repl.entry import add_repl_arguments

    parser = argparse.ArgumentParser(
        prog="recall",
        description=DESCRIPTION,
        epilog=EPILOG.format(memory=default_memory_dir()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="edit the embedded model's facts live, then a quick ZsRE eval")
    add_backend_argument(demo)
    demo.add_argument("--model", default=None, help="model name or directory (default: smollm2-135m)")
    demo.add_argument("--n", type=int, default=50, help="bundled ZsRE records in the quick eval (max 50)")
    add_device_argument(demo)

    edit = sub.add_parser("edit", help="teach one fact: recall edit PROMPT TARGET")
    edit.add_argument("prompt", help='the question or cloze prompt, e.g. "Who is the CEO of Acme?"')
    edit.add_argument("target", help='the answer it should get, e.g. "Jane Doe"')
    edit.add_argument("--subject", default=None, help="the entity the fact is about (optional)")
    edit.add_argument(
        "--policy",
        choices=["supersede", "reject", "keep_both"],
        default=None,
        help="when an active edit answers the same question (default: supersede)",
    )
    _add_memory_args(edit)
    add_backend_argument(edit, "the memory's own; recipe for a new memory")

    ask = sub.add_parser("ask", help="answer a question with the memory")
    ask.add_argument("question")
    ask.add_argument("--why", action="store_true", help="show the hits, the threshold and what was injected")
    ask.add_argument("--no-memory", action="store_true", help="answer as the base model, ignoring all edits")
    ask.add_argument("--max-new-tokens", type=int, default=None, help="answer length limit")
    _add_memory_args(ask)

    forget = sub.add_parser(
        "forget",
        help="retract one edit (it stays in history)",
        description=FORGET_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    forget.add_argument("edit_id", help="an edit id or a unique prefix of one (4+ characters)")
    _add_memory_args(forget)
    forget.add_argument(
        "--every-namespace", action="store_true", help="find the id in any namespace, not only --namespace"
    )

    restore = sub.add_parser("restore", help="bring back a forgotten or superseded edit")
    restore.add_argument("edit_id", help="an edit id or a unique prefix (`recall list --all` shows them)")
    _add_memory_args(restore)
    restore.add_argument(
        "--every-namespace", action="store_true", help="find the id in any namespace, not only --namespace"
    )

    lst = sub.add_parser("list", help="list edits")
    lst.add_argument("--all", action="store_true", help="include superseded and retracted edits")
    lst.add_argument("--every-namespace", action="store_true", help="list all namespaces")
    _add_memory_args(lst)

    conflicts = sub.add_parser(
        "conflicts",
        help="pairs of active edits that answer one question (or two close ones) in two ways",
        description="Checks every active edit's question against the others, as `recall edit` does for a "
        "new one: pairs scoring conflict.min_cosine or more are the same question, pairs from "
        "conflict.similar_cosine up are close ones; only pairs with different answers are listed, most "
        "alike first. Both edits of a pair stay active until you forget the wrong one. Edits made with "
        "--policy keep_both, restored edits and batches from EditMemory.add_many can sit here.",
        epilog="example:\n  recall conflicts --every-namespace\n  recall forget 3f2a9c1e   # the wrong one",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    conflicts.add_argument("--every-namespace", action="store_true", help="check each namespace")
    _add_memory_args(conflicts)

    history = sub.add_parser("history", help="the events of one edit (add, supersede, retract, restore)")
    history.add_argument("edit_id", help="an edit id or a unique prefix")
    _add_memory_args(history)
    history.add_argument(
        "--every-namespace", action="store_true", help="find the id in any namespace, not only --namespace"
    )

    for name, add_arguments, text in (
        ("eval", add_eval_arguments, "evaluate a backend on ZsRE / CounterFact / KnowEdit"),
        ("repl", add_repl_arguments, "an interactive shell to edit, ask, inspect and undo"),
        ("report", add_report_arguments, "several backends over several T side by side: tables and plots"),
    ):
        command = sub.add_parser(name, help=text)
        add_arguments(command)
        add_device_argument(command)

    bench = sub.add_parser(
        "bench",
        help="edit and ask latency on the embedded model; `recall bench serve`: a server load test",
        description=BENCH_DESCRIPTION,
        epilog="examples:\n  recall bench --backend recipe --out reports/bench\n"
        "  recall bench serve --clients 20 --editors 8 --seconds 60   # JSON, markdown and a PNG",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "what",
        nargs="?",
        choices=("memory", "serve"),
        default="memory",
        help="memory: edit and ask latency (default); serve: a load test of `recall serve`",
    )
    bench.add_argument("--edits", type=int, default=200, help="edits in the timed memory (default: 200)")
    bench.add_argument(
        "--fill", type=int, default=0, metavar="N", help="fill to N edits (untimed) before timing asks"
    )
    bench.add_argument(
        "--asks", type=int, default=20, help="timed questions of each kind, 1-50 (default: 20)"
    )
    bench.add_argument(
        "--out", type=Path, default=Path("reports"), help="report directory (default: reports)"
    )
    add_load_arguments(bench)
    add_backend_argument(bench)
    add_overrides_argument(bench)
    add_device_argument(bench)

    serve = sub.add_parser(
        "serve",
        help="an OpenAI-compatible server over one memory, with edit endpoints and API keys",
        description=SERVE_DESCRIPTION,
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_arguments(serve)
    add_device_argument(serve)

    stats = sub.add_parser(
        "stats",
        help="second-moment statistics for the weight editors (rome): recall stats --layers 4",
        description=STATS_DESCRIPTION,
        epilog="example: recall stats --model smollm2-135m --layers 3,4,5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stats_arguments(stats)
    add_device_argument(stats)

    diagnose = sub.add_parser(
        "diagnose",
        help="knowledge-superposition statistics of a model's keys, and weight edits' interference",
        description=DIAGNOSE_DESCRIPTION,
        epilog="examples:\n  recall diagnose superposition --model smollm2-135m\n"
        "  recall diagnose superposition --model gemma3-270m --backend rome,memit,alphaedit --edits 20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_diagnose_arguments(diagnose)
    add_device_argument(diagnose)

    train = sub.add_parser(
        "train",
        help="train a backend: recall train {lte,relevance,recipe} [--config FILE] [--set key=value]",
        description="Runs `python -m training RECIPE ...`; `recall train lte --help` lists its options.",
        add_help=False,  # --help goes to the training command, which knows its options
    )
    train.add_argument("arguments", nargs=argparse.REMAINDER, help="the recipe and its options")

    calibrate = sub.add_parser(
        "calibrate",
        help="fit the sentinel's cosine threshold on a ZsRE file; with --review, tabulate a learned "
        "sentinel's margin against retrieval.review_within; with --conflicts, the conflict cut-offs",
        description=CALIBRATE_DESCRIPTION,
        epilog=CALIBRATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_calibrate_arguments(calibrate)
    add_device_argument(calibrate)

    export = sub.add_parser(
        "export-model",
        help="write an embedded model as a plain Hugging Face folder for vLLM or `transformers serve`",
        description=EXPORT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("name", help="an embedded model: smollm2-135m or gemma3-270m")
    export.add_argument("folder", type=Path, help="a new (or empty) folder")
    return parser


def _make_eval_memory(backend: str, overrides: list[str], device: str) -> EditMemory:
    from recall.config import load_config
    from recall.memory import EditMemory

    return EditMemory.temporary(load_config(backend=backend, overrides=overrides), device=device)


def _run(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "demo":
        from recall.cli.demo import run_demo

        return run_demo(backend=args.backend, model=args.model, n=args.n, device=args.device)
    if command in ("eval", "report"):  # both build fresh temporary memories, one per run
        from recall.cli.eval import run_eval_command
        from recall.cli.report import run_report_command

        run = run_eval_command if command == "eval" else run_report_command
        return run(args, lambda name, sets: _make_eval_memory(name, sets, args.device))
    if command == "repl":
        from recall.repl.entry import run_repl_command

        return run_repl_command(args)
    if command == "bench" and args.what == "serve":
        from recall.cli.bench_serve import run_bench_serve

        return run_bench_serve(args)
    if command == "bench":
        from recall.cli.bench import run_bench

        return run_bench(
            num_edits=args.edits,
            num_asks=args.asks,
            out_dir=args.out,
            backend=args.backend,
            overrides=args.overrides,
            device=args.device,
            fill=args.fill,
        )
    if command == "serve":
        from recall.cli.serve import run_serve

        return run_serve(args)
    if command == "stats":
        from recall.cli.stats import run_stats

        return run_stats(args)
    if command == "diagnose":
        from recall.cli.diagnose import run_diagnose

        return run_diagnose(args)
    if command == "calibrate":
        from recall.cli.calibrate import run_calibrate_command

        return run_calibrate_command(args)
    if command == "export-model":
        from recall.lm.export import export_model

        export_model(args.name, args.folder)
        print(
            f"exported {args.name} to {args.folder}; serve it with `vllm serve {args.folder} "
            f"--enable-prompt-embeds` or `transformers serve {args.folder}`"
        )
        return 0
    from recall.cli.memory import open_for_command, run_memory_command

    with open_for_command(args) as memory:
        return run_memory_command(memory, args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        # Everything after `train` belongs to `python -m training` (its own --help included), run as a
        # separate process: `recall` never imports `training` (ARCHITECTURE.md dependency rule).
        return subprocess.call([sys.executable, "-m", "training", *argv[1:]])
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from recall.errors import RecallError, StoreError

    try:
        return _run(args)
    except (RecallError, StoreError) as exc:
        print(f"recall {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recall {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
