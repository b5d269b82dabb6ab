"""Aggregate CaseRows into the summary a report shows: percentages, rates, latency percentiles.

Every rate is a mean over cases of that case's value (EasyEdit averages per edit, then over edits), so a
case with ten locality prompts weighs as much as a case with one. Metrics no case measured are None.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from recall.eval import metrics
from recall.eval.probes import CaseRow

Summary = dict[str, float | int | None]

# Summary keys in report order, with what each means; report.py prints this order.
SUMMARY_KEYS: dict[str, str] = {
    "n": "cases tested",
    "n_noop": "cases whose target equals the original answer (kept, counted)",
    "Rel": "reliability: token accuracy of the target after the edit prompt, %",
    "Gen": "generalization: the same after rephrases, %",
    "Loc": "locality: agreement with the pre-edit argmax on locality pairs, %",
    "Port": "portability: token accuracy on portability pairs, %",
    "ES": "CounterFact efficacy success: P(new) > P(true) on the edit prompt, %",
    "PS": "CounterFact paraphrase success, %",
    "NS": "neighbourhood success: P(locality answer) > P(new) on locality prompts, %",
    "S": "harmonic mean of ES, PS, NS",
    "gen_em": "generated answer to the edit prompt, first line, exact match (normalised), %",
    "gen_contains": "generated answer to the edit prompt contains the target, %",
    "gen_em_rephrase": "exact match on the first rephrase, %",
    "gen_contains_rephrase": "contains match on the first rephrase, %",
    "lf_rouge_l": "long form: ROUGE-L recall of the target by the generated answer to the edit prompt "
    "(the `rouge` package, as UnKEBench/AnyEdit), %",
    "lf_rouge_l_rephrase": "the same for the answer to the first rephrase, %",
    "lf_similarity": "long form: cosine of the answer's and the target's MiniLM sentence embeddings "
    '(UnKEBench\'s "BERT Score"), %',
    "lf_similarity_rephrase": "the same for the answer to the first rephrase, %",
    "fluency": "n-gram entropy ×100 of the edit-prompt answers (METHODS 6.3; short answers score far "
    "below the ~600 of ROME's 100-token generations)",
    "retrieval_top1_prompt": "top-1 hit is the case's own record, for the edit prompt, %",
    "retrieval_top1_rephrase": "the same for rephrases, %",
    "retrieval_topk_rephrase": "the case's record is among the top-k hits for rephrases, %",
    "gate_false_reject_prompt": "the sentinel did not admit the case's record for its prompt, %",
    "gate_false_reject_rephrase": "the same for rephrases, %",
    "gate_closed_rephrase": "the sentinel admitted no record at all for a rephrase: the gate alone, "
    "where a false reject also counts the case's record missing from the top-k, %",
    "gate_false_accept_loc": "the sentinel admitted some record for a locality prompt, %",
    "review_declined_rephrase": "the backend's review turned away the case's own record for a rephrase "
    "after the gate let it through (counted in gate_false_reject_rephrase), %",
    "review_declined_loc": "the review turned away some record for a locality prompt after the gate let "
    "it through (a false accept stopped, unless another record stayed admitted), %",
    "gate_false_accept_loc_edited_subject": "a locality prompt admitted to an edit whose subject it names "
    "(a subject another edit in memory changes, which that edit may rightly answer), %",
    "edit_latency_p50_ms": "median time per edit (a batch's time split evenly over its edits), ms",
    "edit_latency_p99_ms": "99th percentile time per edit, ms",
    "ask_latency_mean_ms": "mean time per question of the pass that answers the edit prompts and first "
    "rephrases and scores every pair (memory.score_and_ask: its time split evenly over its questions and "
    "pairs), ms",
}


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _rate(rows: Sequence[CaseRow], field: Callable[[CaseRow], float | bool | None]) -> float | None:
    """Mean of one per-case field over the cases that measured it, as a percentage."""
    values = [float(v) for v in map(field, rows) if v is not None]
    return _percent(metrics.mean(values))


def _complement(value: float | None) -> float | None:
    return None if value is None else 100.0 - value


def summarize(rows: Sequence[CaseRow]) -> Summary:
    """The summary dict of a run, keyed as in SUMMARY_KEYS."""
    es = _rate(rows, lambda r: r.es)
    ps = _rate(rows, lambda r: r.ps)
    ns = _rate(rows, lambda r: r.ns)
    generations = [r.generation_prompt for r in rows if r.generation_prompt is not None]
    entropy = metrics.ngram_entropy(generations)
    latencies = [r.edit_latency_ms for r in rows]
    ask_latencies = [r.ask_latency_ms for r in rows if r.ask_latency_ms is not None]
    summary: Summary = {
        "n": len(rows),
        "n_noop": sum(r.is_noop for r in rows),
        "Rel": _rate(rows, lambda r: r.rel),
        "Gen": _rate(rows, lambda r: r.gen),
        "Loc": _rate(rows, lambda r: r.loc),
        "Port": _rate(rows, lambda r: r.port),
        "ES": es,
        "PS": ps,
        "NS": ns,
        "S": metrics.harmonic_mean([es, ps, ns]),
        "gen_em": _rate(rows, lambda r: r.em_prompt),
        "gen_contains": _rate(rows, lambda r: r.contains_prompt),
        "gen_em_rephrase": _rate(rows, lambda r: r.em_rephrase),
        "gen_contains_rephrase": _rate(rows, lambda r: r.contains_rephrase),
        "lf_rouge_l": _rate(rows, lambda r: r.rouge_l_prompt),
        "lf_rouge_l_rephrase": _rate(rows, lambda r: r.rouge_l_rephrase),
        "lf_similarity": _rate(rows, lambda r: r.similarity_prompt),
        "lf_similarity_rephrase": _rate(rows, lambda r: r.similarity_rephrase),
        "fluency": None if entropy is None else 100.0 * entropy,
        "retrieval_top1_prompt": _rate(rows, lambda r: r.top1_prompt),
        "retrieval_top1_rephrase": _rate(rows, lambda r: r.top1_rephrase),
        "retrieval_topk_rephrase": _rate(rows, lambda r: r.topk_rephrase),
        "gate_false_reject_prompt": _complement(_rate(rows, lambda r: r.admitted_prompt)),
        "gate_false_reject_rephrase": _complement(_rate(rows, lambda r: r.admitted_rephrase)),
        "gate_closed_rephrase": _rate(rows, lambda r: r.closed_rephrase),
        "gate_false_accept_loc": _rate(rows, lambda r: r.loc_false_accept),
        "review_declined_rephrase": _rate(rows, lambda r: r.declined_rephrase),
        "review_declined_loc": _rate(rows, lambda r: r.declined_loc),
        "gate_false_accept_loc_edited_subject": _rate(rows, lambda r: r.loc_edited_subject),
        "edit_latency_p50_ms": metrics.percentile(latencies, 50),
        "edit_latency_p99_ms": metrics.percentile(latencies, 99),
        "ask_latency_mean_ms": metrics.mean(ask_latencies),
    }
    return summary


# Case subsets a report shows beside the whole run, with what each holds.
SUBSETS: dict[str, str] = {
    "distinct_subject": "cases whose subject no other case in memory edits with another target",
    "shared_subject": "cases whose subject another case in memory edits with another target (on zsRE: "
    "mostly the same question in other words, so a rephrase cannot tell which edit it paraphrases)",
    "locality_unedited": "cases whose locality prompts name no subject an edit in memory changes: their Loc "
    "is the gate's and the model's alone",
    "locality_edited": "cases with a locality prompt that names the subject of an edit in memory, often "
    "asking that very fact (CounterFact repeats subjects): the memory should answer it with the edit, "
    "which Loc counts as a failure",
}


def subset_summaries(rows: Sequence[CaseRow]) -> dict[str, Summary]:
    """The summary of each subset in SUBSETS, leaving out a split whose one side is empty (it would only
    repeat the whole run)."""
    splits = {
        ("distinct_subject", "shared_subject"): [r.shared_subject for r in rows],
        ("locality_unedited", "locality_edited"): [r.loc_names_edited for r in rows],
    }
    out: dict[str, Summary] = {}
    for (no, yes), flags in splits.items():
        if any(flags) and any(f is False for f in flags):
            out[no] = summarize([r for r, f in zip(rows, flags, strict=True) if f is False])
            out[yes] = summarize([r for r, f in zip(rows, flags, strict=True) if f])
    return out
