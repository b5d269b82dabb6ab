"""RECIPE training edits (METHODS.md §1.5): per edit a knowledge statement, a reliability prompt (the edit
question), a generality prompt (a paraphrase) and a locality question with its answer, tokenised exactly
as the recipe backend renders prompts (recall.lm.prompts.render, chat template)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from recall.datasets.cases import EvalCase
from recall.lm.loading import LanguageModel
from recall.lm.prompts import render, statement
from recall.lm.scoring import end_of_turn_id, prompt_ids, target_ids
from training.errors import TrainingError

Pair = tuple[list[int], list[int]]  # (prompt ids, target ids)


@dataclass(frozen=True)
class RecipeEdit:
    """One training edit in text."""

    statement: str
    rel: str  # the edit question
    gen: str  # a paraphrase (the question itself when the data set has none)
    loc: str  # an unrelated question
    loc_answer: str
    target: str
    source: str


@dataclass(frozen=True)
class RecipeExample:
    """A RecipeEdit with its three tokenised (prompt, answer) pairs."""

    edit: RecipeEdit
    rel: Pair
    gen: Pair
    loc: Pair


def build_edits(sources: dict[str, list[EvalCase]], seed: int) -> list[RecipeEdit]:
    """Every usable case as a RecipeEdit. A case without a locality pair borrows another case's: any
    unrelated question serves as out-of-scope."""
    rng = random.Random(seed)
    pool = [pair for cases in sources.values() for case in cases for pair in case.locality]
    if not pool:
        raise TrainingError("no locality pairs in the train data: RECIPE's locality terms need some")
    edits: list[RecipeEdit] = []
    for name, cases in sources.items():
        for case in cases:
            loc, loc_answer = case.locality[0] if case.locality else rng.choice(pool)
            gen = rng.choice(case.rephrases) if case.rephrases else case.prompt
            edits.append(
                RecipeEdit(
                    statement(case.prompt, case.target), case.prompt, gen, loc, loc_answer, case.target, name
                )
            )
    return edits


def tokenise(
    lm: LanguageModel, edits: Sequence[RecipeEdit], max_length: int
) -> tuple[list[RecipeExample], int]:
    """Examples in edit order, and how many edits were dropped for a pair longer than `max_length`.

    Edit answers end with the end-of-turn token (the model learns to stop); the locality answer does
    not: only its tokens' distributions are compared with the base model's.
    """
    end = end_of_turn_id(lm)
    if end is None:
        raise TrainingError(f"{lm.model_id} has neither an end-of-turn nor an EOS token to end answers")

    def question(text: str) -> list[int]:
        return prompt_ids(lm, render(lm, text, use_chat_template=True))

    examples: list[RecipeExample] = []
    dropped = 0
    for edit in edits:
        answer = [*target_ids(lm, edit.target, leading_space=False), end]
        loc_answer = target_ids(lm, edit.loc_answer, leading_space=False)
        pairs = [(question(edit.rel), answer), (question(edit.gen), answer), (question(edit.loc), loc_answer)]
        if any(not t or len(p) + len(t) > max_length for p, t in pairs):
            dropped += 1
            continue
        examples.append(RecipeExample(edit, *pairs))
    return examples, dropped
