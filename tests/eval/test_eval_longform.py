"""Long-form scoring (recall/eval/longform.py) and UnKEBench records: ROUGE-L recall and sentence
similarity of generated answers, the answer budget that follows the target, the report's columns."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_fakes import FakeMemory, WrongMemory

from recall.datasets.cases import EvalCase
from recall.datasets.loading import load_cases
from recall.errors import ConfigError
from recall.eval import longform
from recall.eval.protocols import run_protocol
from recall.eval.report import format_markdown
from recall.eval.settings import EvalSettings
from recall.results import Answer
from recall.retrieval.encoder import HashingEncoder

LONG = "cone cells in the back of the eye react to a specific wavelength of light and signal the brain"
CASE = EvalCase("0", "how do animals see colors ?", LONG, rephrases=("in what ways do animals see colors ?",))


def test_rouge_l_recall_is_the_share_of_the_reference_covered() -> None:
    assert longform.rouge_l_recall(LONG, LONG) == pytest.approx(1.0)
    half = " ".join(LONG.split()[:10])
    assert 0.45 < longform.rouge_l_recall(half, LONG) < 0.65  # about half (`rouge` drops some short words)
    assert longform.rouge_l_recall("", LONG) == 0.0
    assert longform.rouge_l_recall("...", LONG) == 0.0  # `rouge` itself would raise


def test_similarity_is_the_cosine_of_the_two_embeddings() -> None:
    scores = longform.similarities(HashingEncoder(), [LONG, "zorblax"], [LONG, LONG])
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert scores[1] < 0.5
    assert longform.similarities(HashingEncoder(), [], []) == []


def test_answer_budget_follows_the_target() -> None:
    assert longform.answer_tokens(LONG) == int(1.5 * 19) + 16
    assert longform.answer_tokens("x " * 200) > 300


class LongMemory(FakeMemory):
    """Answers the edited question with the stored target, and records each answer budget."""

    budgets: list[int | None]

    def ask(
        self,
        query: str,
        namespace: str = "default",
        *,
        max_new_tokens: int | None = None,
        use_memory: bool = True,
    ) -> Answer:
        self.budgets = [*getattr(self, "budgets", []), max_new_tokens]
        answer = super().ask(query, namespace, max_new_tokens=max_new_tokens, use_memory=use_memory)
        hits = answer.retrieval.admitted
        text = hits[0].record.target if hits else "I do not know."
        return Answer(text=text, retrieval=answer.retrieval, backend="long")


def test_a_long_form_run_scores_question_and_rephrase_and_reports_them() -> None:
    memory = LongMemory({})
    settings = EvalSettings(long_form=True, similarity_encoder="hashing", compare_probabilities=False)
    result = run_protocol(memory, [CASE], settings, progress=False)
    row = result.rows[0]
    assert row.rouge_l_prompt == pytest.approx(1.0)
    assert row.similarity_prompt == pytest.approx(1.0, abs=1e-5)
    assert row.rouge_l_rephrase is not None
    assert result.summary["lf_rouge_l"] == pytest.approx(100.0)
    assert memory.budgets[0] == longform.answer_tokens(LONG)
    markdown = format_markdown(result, {"data": {"path": "unke.json", "format": "unke"}})
    assert "lf_rouge_l | lf_rouge_l_rephrase | lf_similarity | lf_similarity_rephrase" in markdown
    wrong = run_protocol(WrongMemory({}), [CASE], settings, progress=False)
    assert wrong.summary["lf_rouge_l"] == pytest.approx(0.0)


def test_without_long_form_nothing_is_scored_and_the_headline_is_unchanged() -> None:
    result = run_protocol(FakeMemory({}), [CASE], EvalSettings(compare_probabilities=False), progress=False)
    assert result.rows[0].rouge_l_prompt is None
    assert result.summary["lf_rouge_l"] is None
    assert "lf_rouge_l |" not in format_markdown(result, {"data": {}}).splitlines()[2]


def test_long_form_needs_generation() -> None:
    with pytest.raises(ConfigError, match="needs generation"):
        EvalSettings(long_form=True, generation=False)


def test_unkebench_records_become_long_cases(shared_data: Path) -> None:
    cases = load_cases(shared_data / "unke" / "UnKEBench_final_data_v2.json", n=3)
    first = cases[0]
    assert first.case_id == "0"
    assert first.prompt == "How can different animals perceive different colors?"
    assert first.rephrases == ("In what ways do various animals perceive different colors?",)
    assert first.target.startswith("Larger animals (including humans) have special cells")
    assert len(first.target.split()) > 100
    assert len(first.portability) == 5
    assert first.portability[0][1] == "They are called cone cells."
    assert first.locality == ()
