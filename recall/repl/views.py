"""What the REPL's inspection commands show: :why (an answer's provenance), :history (an edit with the
edits it superseded or that superseded it, and their events) and :conflicts (pairs of active edits that
answer one question two ways)."""

from __future__ import annotations

import builtins
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from recall.display import fact, one_line
from recall.repl.commands import Output, short_id
from recall.results import id_list

if TYPE_CHECKING:
    from memory_store import EditRecord
    from recall.interface import MemoryInterface
    from recall.results import Answer, ConflictPair


def when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def show_why(out: Output, answer: Answer, sentinel_name: str) -> None:
    """The hits of `answer` with scores and verdicts, the threshold, the decision and what was injected."""
    retrieval = answer.retrieval
    admitted = {hit.record.edit_id for hit in retrieval.admitted}
    marks = {"admitted": "yes", "declined": "declined", "overridden": "overridden", "rejected": "no"}
    rows = [
        [
            str(hit.rank),
            short_id(hit.record.edit_id),
            f"{hit.score:.3f}",
            marks[retrieval.verdict(hit)],
            fact(hit.record),
        ]
        for hit in retrieval.hits
    ]
    out.line(f"why: {one_line(retrieval.query)}")
    if rows:
        out.table(["rank", "id", "score", "admitted", "edit"], rows)
    elif math.isnan(retrieval.threshold):
        out.note("no retrieval: this backend applies edits inside the model (or memory was off)")
    else:
        out.note("no edits retrieved (the memory is empty in this namespace)")
    used = id_list(answer.used)  # what the backend reports it applied
    if admitted:
        decision = f"admitted {len(admitted)} of {len(retrieval.hits)} hits: the answer used {used or 'none'}"
    elif used:
        decision = f"the backend applied {used} inside the model"
    else:
        decision = "admitted nothing: the base model answered, nothing injected"
    if retrieval.declined:
        declined = ", ".join(short_id(hit.record.edit_id) for hit in retrieval.declined)
        decision = f"{decision}; the model declined {declined} as unrelated to the question"
    if retrieval.overridden:
        stale = ", ".join(short_id(hit.record.edit_id) for hit in retrieval.overridden)
        decision = f"{decision}; {stale} overridden by a newer edit of the same fact"
    injected = answer.injected.strip("\n")
    multiline = "\n" in injected
    shown = "(nothing)" if not injected else "(the text below, verbatim)" if multiline else injected
    out.pairs(
        [
            ("threshold", f"{retrieval.threshold:.3f}"),
            ("sentinel", f"{sentinel_name}: {decision}"),
            ("backend", answer.backend),
            ("injected", shown),
        ]
    )
    if multiline:
        out.block(injected)


def supersede_chain(memory: MemoryInterface, record: EditRecord) -> builtins.list[EditRecord]:
    """The record with the edits it superseded (older) and those that superseded it (newer)."""
    chain = [record]
    seen = {record.edit_id}
    while chain[0].supersedes and chain[0].supersedes not in seen:
        older = memory.find(chain[0].supersedes)
        seen.add(older.edit_id)
        chain.insert(0, older)
    successors = {r.supersedes: r for r in memory.list(namespace=None, status=None) if r.supersedes}
    while chain[-1].edit_id in successors and successors[chain[-1].edit_id].edit_id not in seen:
        newer = successors[chain[-1].edit_id]
        seen.add(newer.edit_id)
        chain.append(newer)
    return chain


def show_history(out: Output, memory: MemoryInterface, record: EditRecord) -> None:
    """One row per event of each edit in `record`'s supersede chain, oldest edit first."""
    rows: builtins.list[builtins.list[str]] = []
    for member in supersede_chain(memory, record):
        shown = fact(member)
        for event in memory.history(member.edit_id):
            detail = event.reason
            if event.other_id:
                detail = f"{detail} ({short_id(event.other_id)})".strip()
            rows.append([short_id(member.edit_id), member.status, event.kind, when(event.at), shown, detail])
            shown = ""
    out.table(["id", "status", "event", "when", "edit", "detail"], rows)


def show_conflicts(out: Output, pairs: Sequence[ConflictPair], scope: str) -> None:
    """One row per pair, most alike first, and how to settle one."""
    if not pairs:
        out.note(f"no conflicting edits in {scope}")
        return
    rows = [
        [
            f"{p.score:.2f}",
            p.kind,
            f"{short_id(p.older.edit_id)}  {fact(p.older)}",
            f"{short_id(p.newer.edit_id)}  {fact(p.newer)}",
        ]
        for p in pairs
    ]
    title = f"{len(pairs)} pair{'s' * (len(pairs) != 1)} in {scope}, both active"
    out.table(["score", "kind", "older", "newer"], rows, title=title)
    out.note(":forget <id> retracts the wrong one of a pair")
