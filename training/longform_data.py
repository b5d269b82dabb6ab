"""Long-answer train cases (issue #32) from KnowEdit's WikiBio train split: one edit a person, whose
target is that person's passage and every sentence the split asks models to generate about them
(~90 words, UnKEBench's answers are ~97), asked and paraphrased with question templates.

WikiBio train holds 464 records over 157 people: each record repeats the person's passage with one
more sentence (`labels`). One case a person keeps a question from having two answers in one batch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from recall.datasets.cases import EvalCase
from training.errors import TrainingError

# Questions a user asks for a paragraph about someone; a case's question and paraphrase are two of them.
QUESTIONS: tuple[str, ...] = (
    "Who is {name}?",
    "Tell me about {name}.",
    "What can you tell me about {name}?",
    "Give me a short biography of {name}.",
    "Describe the life and career of {name}.",
    "What is {name} known for?",
    "Summarize what is known about {name}.",
    "Write a few sentences about {name}.",
)

_INTRO = "This is a Wikipedia passage about "


def load_wikibio(path: str | Path, limit: int, seed: int) -> list[EvalCase]:
    """At most `limit` people of a WikiBio file as long-answer cases, in the file's order of first
    appearance. Raises TrainingError for a file that is not WikiBio."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot read the WikiBio train file {str(path)!r}: {exc}") from exc
    people: dict[str, list[str]] = {}  # concept -> [passage, label, label, ...]
    for index, record in enumerate(records if isinstance(records, list) else []):
        if not isinstance(record, dict) or not {"concept", "text", "labels"} <= set(record):
            raise TrainingError(f"{str(path)!r} record {index}: expected WikiBio keys concept, text, labels")
        concept = record["concept"].strip()
        parts = people.setdefault(concept, [_passage(record["text"], concept)])
        label = record["labels"].strip()
        if label and label not in parts:
            parts.append(label)
    if not people:
        raise TrainingError(f"{str(path)!r} holds no WikiBio records")
    rng = random.Random(seed)
    cases = []
    for index, (concept, parts) in enumerate(list(people.items())[:limit]):
        name = concept.title()
        question, paraphrase = rng.sample(QUESTIONS, 2)
        cases.append(
            EvalCase(
                case_id=f"wikibio-{index}",
                prompt=question.format(name=name),
                target=" ".join(p for p in parts if p),
                subject=name,
                rephrases=(paraphrase.format(name=name),),
            )
        )
    return cases


def _passage(text: str, concept: str) -> str:
    """The passage without WikiBio's "This is a Wikipedia passage about <concept>." opening."""
    text, opening = text.strip(), f"{_INTRO}{concept}."
    if text.lower().startswith(opening.lower()):
        text = text[len(opening) :]
    return text.strip()
