"""`recall repl`: its options, and opening the memory before handing it to the Repl."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from recall.config.options import add_backend_argument
from recall.errors import RecallError, StoreError
from recall.interface import MemoryInterface
from recall.paths import default_memory_dir
from recall.repl.commands import Output, RichOutput, stdin_reader, terminal_readers, valid_namespace
from recall.repl.session import OpenMemory, Repl, describe_error


def _open_edit_memory(
    path: Path, model: str | None, backend: str | None, device: str = "auto"
) -> MemoryInterface:
    from recall.memory import EditMemory

    memory: MemoryInterface = EditMemory.open_or_create(path, model=model, backend=backend, device=device)
    return memory


def add_repl_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `recall repl`'s options to `parser`."""
    parser.add_argument(
        "--memory",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"memory directory, created when missing (default: {default_memory_dir()})",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME|PATH",
        help="base model (default: the memory's own; recall's default for a new memory)",
    )
    add_backend_argument(parser, "the memory's own; recipe for a new memory")
    parser.add_argument("--namespace", default="default", metavar="NS", help="namespace to start in")


def run_repl_command(args: argparse.Namespace, open_memory: OpenMemory | None = None) -> int:
    """Run `recall repl`: rich and line editing on a terminal, plain text when stdin or stdout is not one.

    Returns the exit status: 0 after :quit or end of input, 1 when the memory cannot be opened, 2 for a
    bad --namespace, 130 when interrupted while opening.
    """
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    out = RichOutput(Console(highlight=False)) if interactive else Output(sys.stdout)
    namespace: str = args.namespace
    if not valid_namespace(namespace):
        sys.stderr.write(
            f"recall repl: --namespace {namespace!r} is not a namespace name (letters, digits, _ . @ / -)\n"
        )
        return 2
    path: Path = args.memory if args.memory is not None else default_memory_dir()
    if args.memory is None:
        notice = f"using the default memory at {path} (--memory DIR picks another)"
        if interactive:
            out.note(notice)
        else:  # keep stdout for answers and results in scripted runs
            sys.stderr.write(f"recall repl: {notice}\n")
    if interactive:
        out.note(f"opening {path} ...")
    try:
        if open_memory is None:
            memory = _open_edit_memory(path, args.model, args.backend, getattr(args, "device", "auto"))
        else:
            memory = open_memory(path, args.model, args.backend)
    except KeyboardInterrupt:
        sys.stderr.write("recall repl: cancelled\n")
        return 130
    except (RecallError, StoreError, ValueError, OSError) as exc:
        sys.stderr.write(f"recall repl: cannot open the memory at {path}: {describe_error(exc)}\n")
        return 1
    try:
        repl = Repl(memory, out, namespace=namespace, interactive=interactive)
        if interactive:
            repl.read_line, repl.read_field = terminal_readers(repl.known_edits, repl.namespace_names)
            info = memory.info()
            out.note(
                f"model {info.get('model', '?')}, backend {info.get('backend', '?')}, "
                f"{memory.count(None)} active edits. Ask a question, or :help"
            )
        else:
            repl.read_line = repl.read_field = stdin_reader(
                sys.stdin, sys.stderr if sys.stdin.isatty() else None
            )
        return repl.run()
    finally:
        memory.close()
