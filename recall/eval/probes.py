"""The test phase: score every probe of already-edited cases and return one CaseRow per case."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recall.errors import RecallError
from recall.eval import longform, metrics
from recall.retrieval.subjects import names_edit_subject

if TYPE_CHECKING:
    from recall.datasets.cases import EvalCase
    from recall.eval.settings import EvalSettings
    from recall.interface import MemoryInterface
    from recall.results import Answer, Retrieval, TargetScore


@dataclass(frozen=True, slots=True)
class CaseRow:
    """Every per-case number of a run; None means "not measured for this case", never 0.

    Accuracies are fractions in [0, 1] (the summary turns means into percentages). `*_rephrase` values
    over several rephrases are the share of rephrases; generation uses the first rephrase only.
    """

    case_id: str
    edit_id: str
    is_noop: bool
    edit_latency_ms: float
    rel: float  # teacher-forced token accuracy of the target after the edit prompt (METHODS 6.1)
    gen: float | None  # the same after each rephrase, averaged
    loc: float | None  # agreement with the pre-edit argmax on locality pairs (METHODS 6.2)
    port: float | None  # token accuracy on portability pairs
    es: float | None  # CounterFact efficacy success: P(new) > P(true) on the prompt (METHODS 6.4)
    ps: float | None  # paraphrase success over rephrases; ES and PS are None for no-op cases
    ns: float | None  # neighbourhood success: P(locality answer) > P(new) on locality prompts
    top1_prompt: bool  # retrieve(prompt).hits[0] is this case's record
    top1_rephrase: float | None
    topk_rephrase: float | None  # the record is anywhere in the top-k hits (LTE's retrieved_acc_k)
    admitted_prompt: bool  # the sentinel let this case's record through for its own prompt
    admitted_rephrase: float | None
    loc_false_accept: float | None  # share of locality prompts on which the sentinel admitted anything
    generation_prompt: str | None = None
    generation_rephrase: str | None = None
    em_prompt: bool | None = None
    contains_prompt: bool | None = None
    em_rephrase: bool | None = None
    contains_rephrase: bool | None = None
    ask_latency_ms: float | None = None
    closed_rephrase: float | None = None  # share of rephrases on which the sentinel admitted nothing
    # share of rephrases whose own record passed the gate and the backend's review turned it away
    declined_rephrase: float | None = None
    # share of locality prompts on which the review turned away some record that passed the gate
    declined_loc: float | None = None
    # share of locality prompts admitted to an edit whose subject they name: a question about a subject
    # another edit in memory changes, which that edit may rightly answer (CounterFact repeats subjects)
    loc_edited_subject: float | None = None
    # another case in memory at the same time edits this subject with another target (cases.shared_subjects)
    shared_subject: bool | None = None
    # a locality prompt names the subject of an edit in memory (cases.locality_names_edited)
    loc_names_edited: bool | None = None
    # the backend reports it applied this case's edit to the generated answer (Answer.used): the
    # provenance of what was generated, for in-model backends too (admitted_* describe the gate)
    # long-form scores of the generated answers (settings.long_form; recall/eval/longform.py), in [0, 1]
    rouge_l_prompt: float | None = None
    rouge_l_rephrase: float | None = None
    similarity_prompt: float | None = None
    similarity_rephrase: float | None = None
    used_own_prompt: bool | None = None
    used_own_rephrase: bool | None = None


class _PairBatch:
    """Collects (query, target) pairs from many cases so one score_many call scores them all."""

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def add(self, pairs: Iterable[tuple[str, str]]) -> slice:
        start = len(self.pairs)
        self.pairs.extend(pairs)
        return slice(start, len(self.pairs))


@dataclass(frozen=True, slots=True)
class _CaseSlices:
    rel: slice
    gen: slice
    loc: slice
    port: slice
    prompt_true: slice  # (prompt, ground truth): ES
    rephrase_true: slice  # (rephrase, ground truth): PS
    loc_new: slice  # (locality prompt, target): NS


def _distinct_truth(case: EvalCase) -> str | None:
    # ES/PS compare P(new) with P(true): undefined without an original answer or when the two are equal.
    return None if case.is_noop else case.ground_truth


def _plan(case: EvalCase, batch: _PairBatch, settings: EvalSettings) -> _CaseSlices:
    gen = batch.add((q, case.target) for q in case.rephrases)
    rel = batch.add([(case.prompt, case.target)])
    loc = batch.add(case.locality)
    port = batch.add(case.portability)
    empty = slice(0, 0)
    prompt_true = rephrase_true = loc_new = empty
    if settings.compare_probabilities:
        truth = _distinct_truth(case)
        if truth is not None:
            prompt_true = batch.add([(case.prompt, truth)])
            rephrase_true = batch.add((q, truth) for q in case.rephrases)
        loc_new = batch.add((q, case.target) for q, _ in case.locality)
    return _CaseSlices(rel, gen, loc, port, prompt_true, rephrase_true, loc_new)


def score_pairs(
    memory: MemoryInterface, pairs: Sequence[tuple[str, str]], namespace: str, *, use_memory: bool
) -> list[TargetScore]:
    """memory.score_many, skipping the call for no pairs and checking the contract on the count."""
    if not pairs:
        return []
    scores = memory.score_many(pairs, namespace, use_memory=use_memory)
    if len(scores) != len(pairs):
        raise RecallError(f"score_many returned {len(scores)} scores for {len(pairs)} pairs")
    return scores


def _logprobs(scores: Sequence[TargetScore]) -> list[float]:
    return [s.mean_logprob for s in scores]


def _probability_scores(
    case: EvalCase, scores: Sequence[TargetScore], where: _CaseSlices, settings: EvalSettings
) -> tuple[float | None, float | None, float | None]:
    if not settings.compare_probabilities:
        return None, None, None
    es = ps = None
    if _distinct_truth(case) is not None:
        es = metrics.efficacy_success(
            scores[where.rel][0].mean_logprob, scores[where.prompt_true][0].mean_logprob
        )
        ps = metrics.paraphrase_success(
            zip(_logprobs(scores[where.gen]), _logprobs(scores[where.rephrase_true]), strict=True)
        )
    ns = metrics.neighborhood_success(
        zip(_logprobs(scores[where.loc_new]), _logprobs(scores[where.loc]), strict=True)
    )
    return es, ps, ns


def _is_top1(retrieval: Retrieval, edit_id: str) -> bool:
    return bool(retrieval.hits) and retrieval.hits[0].record.edit_id == edit_id


def _in_hits(retrieval: Retrieval, edit_id: str) -> bool:
    return any(hit.record.edit_id == edit_id for hit in retrieval.hits)


def _is_admitted(retrieval: Retrieval, edit_id: str) -> bool:
    return any(hit.record.edit_id == edit_id for hit in retrieval.admitted)


def _names_admitted(retrieval: Retrieval) -> bool:
    """Whether the query names the (given) subject of an edit admitted for it."""
    query = retrieval.query
    return any(bool(h.record.subject) and names_edit_subject(query, h.record) for h in retrieval.admitted)


def _is_declined(retrieval: Retrieval, edit_id: str) -> bool:
    return any(hit.record.edit_id == edit_id for hit in retrieval.declined)


def _share(flags: Sequence[bool]) -> float | None:
    return metrics.mean(1.0 if f else 0.0 for f in flags)


@dataclass(frozen=True, slots=True)
class _Generation:
    prompt_text: str | None = None
    rephrase_text: str | None = None
    em_prompt: bool | None = None
    contains_prompt: bool | None = None
    em_rephrase: bool | None = None
    contains_rephrase: bool | None = None
    latency_ms: float | None = None
    used_prompt: tuple[str, ...] | None = None  # edit ids the backend reports it applied
    used_rephrase: tuple[str, ...] | None = None
    rouge_l: tuple[float | None, float | None] = (None, None)  # prompt, rephrase
    similarity: tuple[float | None, float | None] = (None, None)


def _budget(case: EvalCase, settings: EvalSettings) -> int | None:
    if settings.long_form:
        return max(settings.max_new_tokens or 0, longform.answer_tokens(case.target))
    return settings.max_new_tokens


def _asked(cases: Sequence[EvalCase], settings: EvalSettings) -> tuple[list[str], list[int | None]]:
    """The questions answered for each case (its prompt and its first rephrase), with their budgets."""
    queries: list[str] = []
    budgets: list[int | None] = []
    for case in cases:
        asked = [case.prompt, *case.rephrases[:1]]
        queries += asked
        budgets += [_budget(case, settings)] * len(asked)
    return queries, budgets


def _score_and_answer(
    memory: MemoryInterface,
    pairs: Sequence[tuple[str, str]],
    cases: Sequence[EvalCase],
    settings: EvalSettings,
) -> tuple[list[TargetScore], list[_Generation]]:
    """Every pair's score and, with generation on, each case's answers: one score_and_ask (the memory
    decodes the answers from its scoring pass where its backend can: the same answers as one by one)."""
    if not settings.generation:
        return score_pairs(memory, pairs, settings.namespace, use_memory=True), [_Generation() for _ in cases]
    queries, budgets = _asked(cases, settings)
    scores, answered = memory.score_and_ask(pairs, queries, settings.namespace, max_new_tokens=budgets)
    if len(scores) != len(pairs) or len(answered) != len(queries):
        raise RecallError(
            f"score_and_ask returned {len(scores)} scores for {len(pairs)} pairs and {len(answered)} "
            f"answers for {len(queries)} questions"
        )
    answers = iter(answered)
    out = []
    for case in cases:
        answer = next(answers)
        rephrase = next(answers) if case.rephrases else None
        out.append(_scored(case, answer, rephrase, settings))
    return scores, out


def _scored(case: EvalCase, answer: Answer, rephrase: Answer | None, settings: EvalSettings) -> _Generation:
    rephrase_text = None if rephrase is None else rephrase.text
    rouge_l: tuple[float | None, float | None] = (None, None)
    similarity: tuple[float | None, float | None] = (None, None)
    if settings.long_form:
        from recall.build import shared_encoder  # the encoder's libraries load only for long-form runs

        texts = [answer.text] if rephrase_text is None else [answer.text, rephrase_text]
        scores = longform.similarities(
            shared_encoder(settings.similarity_encoder, 64), texts, [case.target] * len(texts)
        )
        rouge = [longform.rouge_l_recall(text, case.target) for text in texts]
        rouge_l = (rouge[0], rouge[1] if len(rouge) > 1 else None)
        similarity = (scores[0], scores[1] if len(scores) > 1 else None)
    return _Generation(
        prompt_text=answer.text,
        rephrase_text=rephrase_text,
        em_prompt=metrics.exact_match(answer.text, case.target),
        contains_prompt=metrics.contains_match(answer.text, case.target),
        em_rephrase=None if rephrase_text is None else metrics.exact_match(rephrase_text, case.target),
        contains_rephrase=None
        if rephrase_text is None
        else metrics.contains_match(rephrase_text, case.target),
        latency_ms=answer.latency_s * 1000.0,
        used_prompt=answer.used,
        used_rephrase=None if rephrase is None else rephrase.used,
        rouge_l=rouge_l,
        similarity=similarity,
    )


def probe_cases(
    memory: MemoryInterface,
    cases: Sequence[EvalCase],
    edit_ids: Sequence[str],
    latencies_ms: Sequence[float],
    base_locality: Sequence[Sequence[TargetScore]],
    settings: EvalSettings,
) -> list[CaseRow]:
    """Score already-edited cases: one score_and_ask for all their pairs and answers, then retrieval.

    `base_locality[i]` holds the pre-edit (use_memory=False) scores of `cases[i].locality`, taken before
    any edit was made; locality is agreement with those, not with the locality answers.
    """
    batch = _PairBatch()
    plans = [_plan(case, batch, settings) for case in cases]
    scores, generations = _score_and_answer(memory, batch.pairs, cases, settings)
    # the gate's verdicts on every case's questions, in one batch: rephrases, prompt, locality
    asked = [q for case in cases for q in (*case.rephrases, case.prompt, *(q for q, _ in case.locality))]
    retrievals = iter(memory.retrieve_many(asked, settings.namespace))
    rows = []
    for case, edit_id, latency, base, where, generation in zip(
        cases, edit_ids, latencies_ms, base_locality, plans, generations, strict=True
    ):
        es, ps, ns = _probability_scores(case, scores, where, settings)
        post_loc = scores[where.loc]
        rephrase_hits = [next(retrievals) for _ in case.rephrases]
        prompt_hits = next(retrievals)
        loc_hits = [next(retrievals) for _ in case.locality]
        rows.append(
            CaseRow(
                case_id=case.case_id,
                edit_id=edit_id,
                is_noop=case.is_noop,
                edit_latency_ms=latency,
                rel=metrics.token_accuracy(scores[where.rel][0]),
                gen=metrics.mean(metrics.token_accuracy(s) for s in scores[where.gen]),
                loc=metrics.mean(
                    metrics.locality_agreement(post, pre) for post, pre in zip(post_loc, base, strict=True)
                ),
                port=metrics.mean(metrics.token_accuracy(s) for s in scores[where.port]),
                es=es,
                ps=ps,
                ns=ns,
                top1_prompt=_is_top1(prompt_hits, edit_id),
                top1_rephrase=_share([_is_top1(r, edit_id) for r in rephrase_hits]),
                topk_rephrase=_share([_in_hits(r, edit_id) for r in rephrase_hits]),
                admitted_prompt=_is_admitted(prompt_hits, edit_id),
                admitted_rephrase=_share([_is_admitted(r, edit_id) for r in rephrase_hits]),
                loc_false_accept=_share([r.used_memory for r in loc_hits]),
                closed_rephrase=_share([not r.used_memory for r in rephrase_hits]),
                declined_rephrase=_share([_is_declined(r, edit_id) for r in rephrase_hits]),
                declined_loc=_share([bool(r.declined) for r in loc_hits]),
                loc_edited_subject=_share([_names_admitted(r) for r in loc_hits]),
                generation_prompt=generation.prompt_text,
                generation_rephrase=generation.rephrase_text,
                em_prompt=generation.em_prompt,
                contains_prompt=generation.contains_prompt,
                em_rephrase=generation.em_rephrase,
                contains_rephrase=generation.contains_rephrase,
                ask_latency_ms=generation.latency_ms,
                rouge_l_prompt=generation.rouge_l[0],
                rouge_l_rephrase=generation.rouge_l[1],
                similarity_prompt=generation.similarity[0],
                similarity_rephrase=generation.similarity[1],
                used_own_prompt=None if generation.used_prompt is None else edit_id in generation.used_prompt,
                used_own_rephrase=None
                if generation.used_rephrase is None
                else edit_id in generation.used_rephrase,
            )
        )
    return rows
