"""Edit-prefix templates and chat rendering, shared by the lte backend and its training data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from recall.models import LanguageModel

TemplateName = Literal["lte", "compact"]

# LTE §2.1, the [Question] form its alignment data uses (YJiangcm/LTE: create_train_data.ipynb).
LTE_TEMPLATE = (
    "Please acknowledge the updated information provided below and respond to the subsequent question."
    "\n\n[Updated Information]:\n{facts}\n\n[Question]:\n{question}"
)
COMPACT_TEMPLATE = "Updated fact: {facts}\n\nQuestion: {question}"

TEMPLATES: dict[str, str] = {"lte": LTE_TEMPLATE, "compact": COMPACT_TEMPLATE}


def format_facts(statements: Sequence[str]) -> str:
    """One statement as is; several as the numbered list "1. fact\\n2. fact" (LTE §2.1)."""
    if len(statements) == 1:
        return statements[0]
    return "\n".join(f"{i}. {s}" for i, s in enumerate(statements, start=1))


def edit_message(question: str, statements: Sequence[str], template: TemplateName = "lte") -> str:
    """The user message: the question alone without statements, else the template around both."""
    if not statements:
        return question
    return TEMPLATES[template].format(facts=format_facts(statements), question=question)


def render(lm: LanguageModel, message: str, *, use_chat_template: bool) -> str:
    """The full prompt text: inside the model's chat template when it has one and it is wanted."""
    if use_chat_template and lm.has_chat_template:
        text = lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=False
        )
        return str(text)
    return message


def statement(prompt: str, target: str) -> str:
    """The fact sentence of an edit: the question (or cloze prompt) followed by its answer."""
    return f"{prompt.strip()} {target.strip()}"
