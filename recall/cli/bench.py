"""`recall bench`: edit latency and ask latency with vs without memory at equal output length."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from recall.backends import Capability, GenerationConfig, get_backend
from recall.cli.latency import latency_ms
from recall.config import load_config
from recall.datasets.loading import SAMPLE, load_cases
from recall.datasets.synthetic import synthetic_edits
from recall.errors import ConfigError
from recall.memory import EditMemory
from recall.results import Edit

SAMPLE_CASES = 50  # records in SAMPLE: the timed questions are their rephrases
ANSWER_TOKENS = 16  # every timed answer has exactly this many new tokens


def _time_forgets(memory: EditMemory, edit_ids: list[str]) -> dict[str, Any]:
    """A weight editor's forget: of the newest edit (the stored deltas before it are re-added) and of the
    oldest (every later edit is recomputed), each with the number of edits it replayed."""
    timings: dict[str, Any] = {}
    for name, edit_id in (("forget_newest", edit_ids[-1]), ("forget_oldest", edit_ids[0])):
        kept = memory.count() - 1
        start = time.perf_counter()
        memory.forget(edit_id)
        timings[name] = {"seconds": time.perf_counter() - start, "edits_kept": kept}
    return timings


def _time_asks(
    memory: EditMemory, questions: Sequence[str], gen: GenerationConfig, name: str
) -> dict[str, Any]:
    """`name`_with_memory / _without_memory latencies, the share of questions an edit was admitted for
    (None for a backend whose edits live in the model: it retrieves nothing), and the overhead at p50.
    The two modes alternate per question, so machine noise hits both alike; without memory is the base
    model (`disabled()`), as `ask(use_memory=False)` runs it."""
    retrieves = Capability.USES_RETRIEVAL in get_backend(memory.backend.name).capabilities
    with_memory, without_memory, admitted = [], [], 0
    for question in questions:
        start = time.perf_counter()
        hits = memory.retrieve(question).admitted if retrieves else ()
        memory.backend.generate(question, hits, gen)
        with_memory.append(time.perf_counter() - start)
        admitted += bool(hits)
        with memory.backend.disabled():
            start = time.perf_counter()
            memory.backend.generate(question, (), gen)
            without_memory.append(time.perf_counter() - start)
    base = latency_ms(without_memory)
    used = latency_ms(with_memory)
    return {
        f"{name}_with_memory": used,
        f"{name}_without_memory": base,
        f"{name}_admitted_share": admitted / len(questions) if retrieves else None,
        f"{name}_overhead_p50": (used["p50_ms"] - base["p50_ms"]) / base["p50_ms"],
    }


def run_bench(
    *,
    num_edits: int,
    num_asks: int,
    out_dir: Path,
    backend: str | None = None,
    overrides: Sequence[str] = (),
    device: str = "auto",
    fill: int = 0,
) -> int:
    if num_edits < 2:
        raise ConfigError(f"--edits must be at least 2 (one warms up, the rest are timed), got {num_edits}")
    if not 1 <= num_asks <= SAMPLE_CASES:
        raise ConfigError(
            f"--asks must lie in 1..{SAMPLE_CASES} (the bundled sample's rephrases), got {num_asks}"
        )
    results: dict[str, Any] = {
        "num_edits": num_edits,
        "num_asks": num_asks,
        "answer_tokens": ANSWER_TOKENS,
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform()},
    }
    with EditMemory.temporary(load_config(backend=backend, overrides=overrides), device=device) as memory:
        results["memory"] = memory.info()
        _check_fill(memory, fill)
        if memory.lm.device.type == "cuda":
            results["machine"]["gpu"] = torch.cuda.get_device_name(memory.lm.device)
        results["backend_preset"] = backend
        results["overrides"] = list(overrides)
        cases = load_cases(SAMPLE, "zsre")
        pairs = [(c.prompt, c.target, c.subject) for c in cases]
        pairs += synthetic_edits(max(0, num_edits - len(cases)))
        edit_ids = [memory.add(*pairs[0]).edit_id]  # warm-up: first encoder call and first SQLite write
        edit_times = []
        for prompt, target, subject in pairs[1:num_edits]:
            start = time.perf_counter()
            edit_ids.append(memory.add(prompt, target, subject, policy="keep_both").edit_id)
            edit_times.append(time.perf_counter() - start)
        results["edit"] = latency_ms(edit_times)
        results["num_edits_in_memory"] = _fill(memory, num_edits, len(cases), fill)
        gen = GenerationConfig(max_new_tokens=ANSWER_TOKENS, min_new_tokens=ANSWER_TOKENS)
        questions = [c.rephrases[0] if c.rephrases else c.prompt for c in cases][:num_asks]
        memory.backend.generate(questions[0], (), gen)  # warm-up
        # Rephrases of stored edits (the memory is used), then the sample's locality questions (unrelated
        # to every edit: the memory only searches, and the gate should keep them out).
        results.update(_time_asks(memory, questions, gen, "ask"))
        unrelated = [c.locality[0][0] for c in cases if c.locality][:num_asks]
        results.update(_time_asks(memory, unrelated, gen, "unrelated"))
        capabilities = get_backend(memory.backend.name).capabilities
        if Capability.EDITS_WEIGHTS | Capability.FORGET in capabilities:
            results.update(_time_forgets(memory, edit_ids))
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
    table = _markdown(results)
    (out_dir / f"bench-{stamp}.md").write_text(table + "\n")
    print(table)
    print(f"\nwritten: {out_dir / f'bench-{stamp}.json'} and .md")
    return 0


# Edits per add_many call of --fill: one encoder batch and one SQLite transaction each.
FILL_BATCH = 500


def _check_fill(memory: EditMemory, fill: int) -> None:
    if fill and Capability.EDITS_WEIGHTS in get_backend(memory.backend.name).capabilities:
        raise ConfigError(
            f"--fill {fill}: a weight editor computes every edit in the model (seconds each); fill a "
            "retrieval backend (recipe, lte, lte_aligned, grace_retrieval)"
        )


def _fill(memory: EditMemory, timed: int, sample: int, fill: int) -> int:
    """Add synthetic edits (untimed, in batches) until the memory holds `fill`; how many it holds."""
    if fill <= timed:
        return timed
    start = max(0, timed - sample)  # the synthetic edits the timed part already made
    extra = synthetic_edits(fill - timed, start)
    for first in tqdm(range(0, len(extra), FILL_BATCH), desc="fill", unit="batch", leave=False):
        batch = [Edit(p, t, subject=s) for p, t, s in extra[first : first + FILL_BATCH]]
        memory.add_many(batch, policy="keep_both")
    return timed + len(extra)


def _overhead(r: dict[str, Any], name: str) -> str:
    """'+9.0% (+106 ms; edits admitted for 100%)' for the questions `name`."""
    added = r[f"{name}_with_memory"]["p50_ms"] - r[f"{name}_without_memory"]["p50_ms"]
    share = r[f"{name}_admitted_share"]
    admitted = (
        "edits live in the model: no retrieval" if share is None else f"edits admitted for {100 * share:.0f}%"
    )
    return f"{100 * r[f'{name}_overhead_p50']:+.1f}% ({added:+.0f} ms; {admitted})"


def _markdown(r: dict[str, Any]) -> str:
    rows = [
        ("edit (add one edit, durable)", r["edit"]),
        (f"ask with memory ({r['answer_tokens']} tokens)", r["ask_with_memory"]),
        (f"ask without memory ({r['answer_tokens']} tokens)", r["ask_without_memory"]),
        ("unrelated question with memory", r["unrelated_with_memory"]),
        ("unrelated question without memory", r["unrelated_without_memory"]),
    ]
    lines = [
        f"recall bench: {r['memory']['model']} / {r['backend_preset']} {' '.join(r['overrides'])}".rstrip()
        + f", {r.get('num_edits_in_memory', r['num_edits'])} edits in memory, "
        + f"on {r['machine'].get('gpu', r['memory']['device'])}",
        "",
        "| operation | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['mean_ms']:.1f} |" for name, v in rows]
    lines.append("")
    lines.append(
        f"ask overhead at p50: {_overhead(r, 'ask')} on rephrases of stored edits, "
        f"{_overhead(r, 'unrelated')} on unrelated questions"
    )
    for name, what in (("forget_newest", "stored deltas re-added"), ("forget_oldest", "edits recomputed")):
        if name in r:
            lines.append(
                f"{name.replace('_', ' ')}: {r[name]['seconds']:.2f} s ({r[name]['edits_kept']} {what})"
            )
    return "\n".join(lines)
