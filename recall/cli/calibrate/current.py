"""`recall calibrate --current`: does the later of two edits of one fact answer, and does an edit of
another fact leave the first alone? Measured on pairs made from a data file's cases, each pair in a
namespace of its own within one memory, at the gate (which edits a question admits):

- same fact reworded: the case's question -> its target, then its first rephrase -> another answer (the
  next case's target), added with the default policy as a user would; asked the second rephrase (or the
  question itself). The later edit wins when it is admitted and the earlier is not.
- another fact: the case's question -> its target, then a locality question -> another answer (CounterFact:
  the same relation about another subject; KnowEdit: often another relation of the same subject); asked
  the case's rephrase. The first edit must still be admitted: superseded at add time or overridden at ask
  time is a false supersede.

Run it with the rules off (`--set conflict.restated_cosine=null`) for the
memory as it was before them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from recall.config import load_config
from recall.datasets.cases import EvalCase
from recall.datasets.loading import FormatName, load_cases
from recall.memory import EditMemory


@dataclass(frozen=True)
class PairCounts:
    pairs: int = 0
    later_wins: int = 0  # same fact: the later edit alone admitted
    superseded: int = 0  # the first edit superseded when the second was added
    overridden: int = 0  # the first edit overridden at ask time
    first_used: int = 0  # another fact: the first edit admitted


def same_fact_pairs(cases: Sequence[EvalCase]) -> list[tuple[EvalCase, str, str, str]]:
    """(case, reworded question, another answer, question asked) per case with a rephrase."""
    pairs = []
    for case, following in zip(cases, [*cases[1:], *cases[:1]], strict=True):
        other = following.target if following.target.casefold() != case.target.casefold() else "nobody"
        if case.rephrases:
            asked = case.rephrases[1] if len(case.rephrases) > 1 else case.prompt
            pairs.append((case, case.rephrases[0], other, asked))
    return pairs


def other_fact_pairs(cases: Sequence[EvalCase]) -> list[tuple[EvalCase, str, str, str]]:
    """(case, another question, another answer, question asked) per case with a locality question and
    a rephrase."""
    return [
        (
            case,
            case.locality[0][0],
            "nobody" if case.target != "nobody" else "somebody",
            (case.rephrases or [case.prompt])[0],
        )
        for case in cases
        if case.locality
    ]


def count(memory: EditMemory, pairs: Sequence[tuple[EvalCase, str, str, str]], *, same: bool) -> PairCounts:
    """Add each pair in its namespace, ask its question, and count what the gate did with the two edits."""
    later = superseded = overridden = first_used = 0
    for index, (case, second, answer, asked) in enumerate(tqdm(pairs, desc="pairs", unit="pair")):
        namespace = f"{'same' if same else 'other'}-{index}"
        first = memory.add(case.prompt, case.target, case.subject, namespace)
        result = memory.add(second, answer, case.subject if same else None, namespace)
        superseded += any(old.edit_id == first.edit_id for old in result.superseded)
        retrieval = memory.retrieve(asked, namespace)
        admitted = {h.record.edit_id for h in retrieval.admitted}
        overridden += any(h.record.edit_id == first.edit_id for h in retrieval.overridden)
        later += result.edit_id in admitted and first.edit_id not in admitted
        first_used += first.edit_id in admitted
    return PairCounts(len(pairs), later, superseded, overridden, first_used)


def run_calibrate_current(
    backend: str, overrides: Sequence[str], data: Path, fmt: FormatName, *, n: int, device: str = "auto"
) -> int:
    config = load_config(backend=backend, overrides=list(overrides))
    cases = [c for c in load_cases(data, fmt, n=n) if not c.is_noop]
    with EditMemory.temporary(config, device=device) as memory:
        same = count(memory, same_fact_pairs(cases), same=True)
        other = count(memory, other_fact_pairs(cases), same=False)
    rule = config.conflict
    print(
        f"{data.name}: {len(cases)} records, backend {backend}; conflict.restated_cosine "
        f"{rule.restated_cosine}, retrieval.subject_margin "
        f"{config.retrieval.subject_margin}"
    )
    print("| pairs | n | later edit alone admitted % | first superseded % | first overridden % "
          "| first admitted % |\n|---|---:|---:|---:|---:|---:|")  # fmt: skip
    for name, counts in (("same fact reworded", same), ("another fact", other)):
        share = 100.0 / max(1, counts.pairs)
        print(
            f"| {name} | {counts.pairs} | {counts.later_wins * share:.1f} | {counts.superseded * share:.1f} "
            f"| {counts.overridden * share:.1f} | {counts.first_used * share:.1f} |"
        )
    return 0
