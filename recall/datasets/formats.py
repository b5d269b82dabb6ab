"""Record-form converters (zsRE, CounterFact, KnowEdit, MQuAKE, UnKEBench, jsonl) to EvalCase, and form
detection.

Choices that change scores, made once here so every report means the same thing:
- Targets are stripped (zsRE `alt` sometimes carries a leading or trailing space).
- zsRE locality questions lose their literal "nq question: " prefix. ROME/MEMIT feed it as-is, but recall
  is asked questions the way a user types them, and a fixed prefix on every locality probe would also
  make them trivially separable from edit prompts for the sentinel.
- KnowEdit ground truths (a string, a list of strings, or a list of alias lists) become their first string.
- Portability sub-metrics (Reasoning, Subject_Aliasing, ...) are flattened into one list of pairs, so Port
  is a mean over pairs, not over sub-metric means as in EasyEdit's KnowEdit table.
- An MQuAKE record becomes one case per requested rewrite; its multi-hop questions are portability pairs
  of the first case only, so each is scored once (see `from_mquake`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from recall.datasets.cases import EmptyEditError, EvalCase, RecordReader, normalize_answer

logger = logging.getLogger(__name__)

DatasetFormat = Literal["zsre", "counterfact", "knowedit", "mquake", "unke", "jsonl"]
FORMATS: tuple[DatasetFormat, ...] = ("zsre", "counterfact", "knowedit", "mquake", "unke", "jsonl")

_NQ_PREFIX = "nq question: "

# Forms that are staged under /work/shared/data but that this harness does not score; naming them beats
# a confusing "missing key" error.
_UNSUPPORTED_FORMS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"concept", "labels", "text"}), "KnowEdit WikiBio (long-form text completion)"),
)


def detect_format(reader: RecordReader) -> DatasetFormat:
    """Guess the record form from one record's keys; raise DatasetError naming the keys when none fits."""
    keys = set(reader.record)
    for required, name in _UNSUPPORTED_FORMS:
        if required <= keys:
            raise reader.error(f"{name} records are not supported by recall eval")
    if {"requested_rewrite", "questions", "new_answer"} <= keys:
        return "mquake"
    if {"question", "para_question", "answer"} <= keys:
        return "unke"
    if "requested_rewrite" in keys or {"target_new", "locality_prompt"} <= keys:
        return "counterfact"
    if {"src", "alt"} <= keys:
        return "zsre"
    if "target_new" in keys and isinstance(
        reader.record.get("locality", reader.record.get("portability")), dict
    ):
        return "knowedit"
    if {"prompt", "target"} <= keys:
        return "jsonl"
    raise reader.error(
        f"cannot tell the data format from keys {sorted(keys)}; pass --format "
        f"({', '.join(FORMATS)}) or use jsonl records with 'prompt' and 'target'"
    )


def _is_noop(target: str, ground_truth: str | None) -> bool:
    # Normalised comparison: "Species" -> "species" does not change the answer either.
    return ground_truth is not None and normalize_answer(target) == normalize_answer(ground_truth)


def _case(reader: RecordReader, case_id: str, prompt: str, target: str, **fields: Any) -> EvalCase:
    target = target.strip()
    if not prompt.strip() or not target:
        raise EmptyEditError(f"{reader.path}: record {reader.index}: empty prompt or target")
    ground_truth = fields.get("ground_truth")
    return EvalCase(
        case_id=case_id,
        prompt=prompt,
        target=target,
        is_noop=_is_noop(target, ground_truth),
        **fields,
    )


def from_zsre(reader: RecordReader) -> EvalCase:
    """zsRE in the MEND/ROME zsre_mem form (src/alt/answers/rephrase/loc/loc_ans)."""
    answers = reader.raw("answers")
    if not isinstance(answers, list) or not answers or not isinstance(answers[0], str):
        raise reader.error("key 'answers' should be a non-empty list of strings")
    subject = reader.optional_text("subject")
    target = reader.text("alt").strip()
    locality: tuple[tuple[str, str], ...] = ()
    if reader.has("loc"):
        loc = reader.text("loc")
        locality = ((loc.removeprefix(_NQ_PREFIX), reader.text("loc_ans")),)
    portability: list[tuple[str, str]] = []
    if isinstance(reader.record.get("portability"), dict):  # EasyEdit "One Hop" file
        port = RecordReader(reader.record["portability"], reader.path, reader.index)
        portability.append((port.text("New Question"), port.text("New Answer")))
    # EasyEdit's other zsRE portability files: the question about an alias of the subject keeps the
    # new answer; the inverse question ("Who is <new object>'s sister?") is answered by the subject.
    if reader.has("alter_subject_question"):
        portability.append((reader.text("alter_subject_question"), target))
    if reader.has("inverse question") and subject is not None:
        portability.append((reader.text("inverse question"), subject))
    return _case(
        reader,
        reader.case_id(),
        reader.text("src"),
        target,
        subject=subject,
        ground_truth=answers[0].strip(),
        rephrases=reader.texts("rephrase"),
        locality=locality,
        portability=tuple(portability),
    )


def from_counterfact(reader: RecordReader) -> EvalCase:
    """CounterFact in either form: ROME's `requested_rewrite` records or EasyEdit's flat records."""
    if reader.has("requested_rewrite"):
        return _from_rome_counterfact(reader)
    ground_truth = reader.text("ground_truth").strip()
    loc_prompts = reader.texts("locality_prompt")
    loc_answers = reader.texts("locality_ground_truth")
    if len(loc_prompts) != len(loc_answers):
        raise reader.error("'locality_prompt' and 'locality_ground_truth' differ in length")
    return _case(
        reader,
        reader.case_id(),
        reader.text("prompt"),
        reader.text("target_new"),
        subject=reader.optional_text("subject"),
        ground_truth=ground_truth,
        rephrases=reader.texts("rephrase_prompt"),
        locality=tuple(zip(loc_prompts, loc_answers, strict=True)),
    )


def _from_rome_counterfact(reader: RecordReader) -> EvalCase:
    rewrite = RecordReader(reader.raw("requested_rewrite"), reader.path, reader.index)
    subject = rewrite.text("subject")
    template = rewrite.text("prompt")
    if "{}" not in template:
        raise reader.error("requested_rewrite.prompt has no '{}' where the subject goes")
    target = RecordReader(rewrite.raw("target_new"), reader.path, reader.index).text("str").strip()
    true = RecordReader(rewrite.raw("target_true"), reader.path, reader.index).text("str").strip()
    # Neighbourhood prompts share the relation and the *true* object (ROME's NS probes).
    locality = tuple((p, true) for p in reader.texts("neighborhood_prompts"))
    portability: list[tuple[str, str]] = []
    if isinstance(reader.record.get("portability"), dict):
        port = RecordReader(reader.record["portability"], reader.path, reader.index)
        portability.append((port.text("New Question"), port.text("New Answer")))
    if reader.has("alternative_subject"):  # EasyEdit "Subject Replace": the alias keeps the new object
        portability.append((template.replace("{}", reader.text("alternative_subject")), target))
    return _case(
        reader,
        reader.case_id(),
        template.replace("{}", subject),  # not str.format: other braces in a prompt are literal
        target,
        subject=subject,
        ground_truth=true,
        rephrases=reader.texts("paraphrase_prompts"),
        locality=locality,
        portability=tuple(portability),
    )


def first_string(value: object) -> str | None:
    """KnowEdit ground truth in any of its shapes (str, [str], [[alias, ...]]) -> its first non-empty string.

    Depth-first, because some alias lists are empty: wiki_recent has `[[], ["Honorary Doctor ..."]]`.
    """
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        for item in value:
            found = first_string(item)
            if found is not None:
                return found
    return None


def _knowedit_pairs(reader: RecordReader, key: str) -> tuple[tuple[str, str], ...]:
    groups = reader.record.get(key) or {}
    if not isinstance(groups, Mapping):
        raise reader.error(f"key {key!r} should map sub-metric names to lists of {{prompt, ground_truth}}")
    pairs: list[tuple[str, str]] = []
    for name, items in groups.items():
        if not isinstance(items, list):
            raise reader.error(f"{key}.{name} should be a list of {{prompt, ground_truth}}")
        for item in items:
            probe = RecordReader(item, reader.path, reader.index)
            answer = first_string(probe.raw("ground_truth"))
            if answer is None:  # e.g. [[], []] in wiki_recent: nothing to teacher-force, so no probe
                logger.debug(
                    "%s: record %d: %s.%s probe without an answer skipped",
                    reader.path,
                    reader.index,
                    key,
                    name,
                )
                continue
            pairs.append((probe.text("prompt"), answer))
    return tuple(pairs)


def from_knowedit(reader: RecordReader) -> EvalCase:
    """KnowEdit (ZsRE-test-all, wiki_counterfact, wiki_recent): nested locality/portability dicts."""
    ground_truth = first_string(reader.record.get("ground_truth"))  # wiki_recent has none: new facts
    rephrase_key = "rephrase" if reader.has("rephrase") else "rephrase_prompt"
    return _case(
        reader,
        reader.case_id(),
        reader.text("prompt"),
        reader.text("target_new"),
        subject=reader.optional_text("subject"),
        ground_truth=ground_truth,
        rephrases=reader.texts(rephrase_key),
        locality=_knowedit_pairs(reader, "locality"),
        portability=_knowedit_pairs(reader, "portability"),
    )


def from_jsonl(reader: RecordReader) -> EvalCase:
    """recall's own form: prompt, target; optional subject, ground_truth, rephrases, locality, portability."""
    ground_truth = reader.optional_text("ground_truth")
    return _case(
        reader,
        reader.case_id(),
        reader.text("prompt"),
        reader.text("target"),
        subject=reader.optional_text("subject"),
        ground_truth=ground_truth.strip() if ground_truth is not None else None,
        rephrases=reader.texts("rephrases"),
        locality=reader.pairs("locality"),
        portability=reader.pairs("portability"),
    )


def from_mquake(reader: RecordReader) -> tuple[EvalCase, ...]:
    """MQuAKE (CF-3k, hard, the AKEW subset): one case per requested rewrite, ids "<case_id>/<i>".

    Each case's prompt is the rewrite's `question` ("What is the country of citizenship of X?") when it
    has one, else its cloze template with the subject filled in; the target is `target_new.str` and the
    ground truth `target_true.str`. The record's multi-hop `questions` become portability pairs
    (question, `new_answer`) of the first case only, so Port is a mean over records of the share of
    those questions answered, each question counted once. MQuAKE has no rephrases or locality probes.

    The multi-hop answer follows from all of a record's edits together: only the sequential protocol
    (every edit made before any test) scores it as MQuAKE intends. A record with an empty target is
    skipped whole (EmptyEditError), never cut to the edits that remain.
    """
    rewrites = reader.raw("requested_rewrite")
    if not isinstance(rewrites, list) or not rewrites:
        raise reader.error("key 'requested_rewrite' should be a non-empty list of edits")
    questions = reader.texts("questions")
    if not questions or not all(q.strip() for q in questions):
        raise reader.error("key 'questions' should be a non-empty list of non-empty multi-hop questions")
    new_answer = reader.text("new_answer").strip()
    if not new_answer:
        raise reader.error("key 'new_answer' is empty")
    record_id = reader.case_id()
    cases = []
    for i, item in enumerate(rewrites):
        rewrite = RecordReader(item, reader.path, reader.index, f"requested_rewrite[{i}]")
        subject = rewrite.text("subject")
        prompt = rewrite.optional_text("question")
        if not prompt or not prompt.strip():
            template = rewrite.text("prompt")
            if "{}" not in template:
                raise rewrite.error("no 'question', and 'prompt' has no '{}' where the subject goes")
            prompt = template.replace("{}", subject)  # not str.format: other braces are literal
        cases.append(
            _case(
                reader,
                f"{record_id}/{i}",
                prompt,
                rewrite.nested("target_new").text("str"),
                subject=subject,
                ground_truth=rewrite.nested("target_true").text("str").strip(),
                portability=tuple((q, new_answer) for q in questions) if i == 0 else (),
            )
        )
    return tuple(cases)


def from_unke(reader: RecordReader) -> EvalCase:
    """UnKEBench (question / para_question / answer, sub_question / sub_answer): the edit teaches the
    whole long `answer` (91 words on average, up to 220) to `question`; `para_question` is the rephrase;
    the sub-questions and their answers, facts the answer states, are portability pairs. UnKEBench has
    no locality probes (its papers measure locality on other data)."""
    questions, answers = reader.texts("sub_question"), reader.texts("sub_answer")
    if len(questions) != len(answers):
        raise reader.error("keys 'sub_question' and 'sub_answer' should be lists of the same length")
    return _case(
        reader,
        reader.case_id("id"),
        reader.text("question"),
        reader.text("answer"),
        rephrases=tuple(r for r in reader.texts("para_question") if r.strip()),
        portability=tuple(
            (q, a.strip()) for q, a in zip(questions, answers, strict=True) if q.strip() and a.strip()
        ),
    )


def _single(convert: Callable[[RecordReader], EvalCase]) -> Callable[[RecordReader], Sequence[EvalCase]]:
    return lambda reader: (convert(reader),)


# Every converter turns one record into its cases: one for most forms, one per edit for MQuAKE.
CONVERTERS: dict[DatasetFormat, Callable[[RecordReader], Sequence[EvalCase]]] = {
    "zsre": _single(from_zsre),
    "counterfact": _single(from_counterfact),
    "knowedit": _single(from_knowedit),
    "mquake": from_mquake,
    "unke": _single(from_unke),
    "jsonl": _single(from_jsonl),
}
