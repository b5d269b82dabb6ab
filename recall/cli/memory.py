"""`recall edit|ask|forget|restore|list|conflicts|history`: one-shot commands over a persistent memory,
plain text out."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os

from memory_store import EditRecord, MemoryNotFoundError, ReadOnlyStoreError
from recall.config import load_config
from recall.display import fact, one_line
from recall.errors import ConfigError
from recall.memory import EditMemory
from recall.paths import default_memory_dir
from recall.results import Answer, EditResult, id_list


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _line(record: EditRecord) -> str:
    return f"{record.edit_id[:8]}  {record.status:<10}  {record.namespace:<10}  {fact(record)}"


def explain(answer: Answer) -> str:
    """The provenance of an answer: hits with scores, the threshold, the decision, what was injected."""
    retrieval = answer.retrieval
    if math.isnan(retrieval.threshold):  # nothing was retrieved: the backend reads no hits, or memory off
        lines = [f"no retrieval ({answer.backend} backend: edits act inside the model, or memory was off)"]
    else:
        lines = [f"threshold {retrieval.threshold:.3f} ({answer.backend} backend)"]
        if retrieval.view is not None:
            lines.append(f"read as its last sentence: {retrieval.view!r}")
        for hit in retrieval.hits:
            mark = retrieval.verdict(hit)
            lines.append(
                f"  {hit.score:.3f}  {mark:<8}  {hit.record.edit_id[:8]}  {one_line(hit.record.statement)}"
            )
        if not retrieval.hits:
            lines.append("  no edits in this namespace")
    if retrieval.declined:
        lines.append(
            "declined: the answering model read those edits beside the question and would not use them"
        )
    if retrieval.overridden:
        lines.append("overridden: a newer admitted edit about the same subject answers the same question")
    lines.append(f"injected: {answer.injected!r}" if answer.injected else "injected: nothing")
    used = id_list(answer.used)
    lines.append(f"used by the backend: {used}" if used else "used by the backend: no edit (the base model)")
    return "\n".join(lines)


def _print_neighbours(result: EditResult) -> None:
    """The active edits left beside an added or restored one: same question, or close with another answer."""
    for other in result.conflicts:
        print(f"kept beside {other.edit_id}: {fact(other)}")
    for hit in result.similar:
        record = hit.record
        print(f"similar {record.edit_id} ({hit.score:.2f}): {fact(record)}")
    others = [r.edit_id[:8] for r in result.conflicts] + [h.record.edit_id[:8] for h in result.similar]
    if others:
        print(f"  (all stay active; if this edit replaces one: recall forget {' or '.join(others)})")


def _scope(args: argparse.Namespace) -> str | None:
    """Where forget/restore/history look for the id: --namespace, or any with --every-namespace."""
    return None if args.every_namespace else str(args.namespace)


READING = ("ask", "list", "conflicts", "history")  # commands that never change a memory


def open_for_command(args: argparse.Namespace) -> EditMemory:
    """The memory a one-shot command works on: --memory, or the user's; only `edit` creates one, and a
    folder that cannot be written is opened read-only for the commands that only read."""
    backend = getattr(args, "backend", None)  # `recall edit --backend` chooses a new memory's backend
    if args.memory is not None and args.command != "edit" and not (args.memory / "manifest.json").is_file():
        # A mistyped --memory must not answer from a new, empty memory: only `edit` creates one.
        raise MemoryNotFoundError(
            f"no memory at {str(args.memory)!r}; check the path, or create one with "
            f"`recall edit PROMPT TARGET --memory {args.memory}`"
        )
    path = args.memory or default_memory_dir()
    if (path / "manifest.json").is_file() and not os.access(path, os.W_OK):  # read-only storage
        if args.command in READING:
            return EditMemory.open(path, device=args.device, read_only=True)
        raise ReadOnlyStoreError(
            f"cannot change the memory at {str(path)!r}: its folder is not writable (read-only storage, or "
            f"another user's); `recall {'|'.join(READING)}` still read it"
        )
    memory = EditMemory.open_or_create(path, backend=backend, device=args.device)
    if backend is not None and load_config(backend=backend).backend.name != memory.backend.name:
        memory.close()
        raise ConfigError(
            f"this memory uses the {memory.backend.name} backend; --backend only chooses the backend of a "
            "new memory (give another --memory)"
        )
    return memory


def run_memory_command(memory: EditMemory, args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "edit":
        result = memory.add(args.prompt, args.target, args.subject, args.namespace, policy=args.policy)
        print(f"added {result.edit_id}: {fact(result.record)}")
        for old in result.superseded:
            print(f"superseded {old.edit_id}: {fact(old)}")
            print(f"  (not the same question? `recall restore {old.edit_id[:8]}` brings it back)")
        _print_neighbours(result)
    elif command == "ask":
        answer = memory.ask(
            args.question, args.namespace, max_new_tokens=args.max_new_tokens, use_memory=not args.no_memory
        )
        marker = f"  [edit {', '.join(i[:8] for i in answer.used)}]" if answer.used_memory else ""
        print(answer.text + marker)
        if args.why:
            print(explain(answer))
    elif command == "forget":
        record = memory.forget(memory.find(args.edit_id, _scope(args)).edit_id)
        print(f"forgot {record.edit_id}: {fact(record)}")
    elif command == "restore":
        result = memory.restore(memory.find(args.edit_id, _scope(args)).edit_id)
        print(f"restored {result.edit_id}: {fact(result.record)}")
        _print_neighbours(result)
    elif command == "list":
        namespace = None if args.every_namespace else args.namespace
        records = memory.list(namespace, status=None if args.all else "active")
        for record in records:
            print(_line(record))
        print(f"{len(records)} edit(s)")
    elif command == "conflicts":
        pairs = memory.conflicts(None if args.every_namespace else args.namespace, progress=True)
        for pair in pairs:
            print(f"{pair.score:.2f}  {pair.kind}")
            for record in (pair.older, pair.newer):
                print(f"  {_line(record)}")
        where = "every namespace" if args.every_namespace else f"namespace {args.namespace}"
        print(
            f"{len(pairs)} pair(s) in {where}"
            + ("; `recall forget ID` retracts the wrong one" if pairs else "")
        )
    elif command == "history":
        found = memory.find(args.edit_id, _scope(args))
        print(_line(found))
        for event in memory.history(found.edit_id):
            linked = f" ({event.other_id[:8]})" if event.other_id else ""
            reason = f": {one_line(event.reason)}" if event.reason else ""
            print(f"  {_when(event.at)}  {event.kind}{linked}{reason}")
    return 0
