"""Edit-prefix templates and chat rendering, shared by the lte backend and its training data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from recall.lm.loading import LanguageModel

TextTemplate = Literal["lte", "compact"]
TemplateName = Literal["lte", "compact", "dialog"]
Fact = tuple[str, str]  # an admitted edit as (prompt, target)

# LTE §2.1, the [Question] form its alignment data uses (YJiangcm/LTE: create_train_data.ipynb).
LTE_TEMPLATE = (
    "Please acknowledge the updated information provided below and respond to the subsequent question."
    "\n\n[Updated Information]:\n{facts}\n\n[Question]:\n{question}"
)
COMPACT_TEMPLATE = "Updated fact: {facts}\n\nQuestion: {question}"

TEMPLATES: dict[str, str] = {"lte": LTE_TEMPLATE, "compact": COMPACT_TEMPLATE}
# "dialog" has no text template: each edit becomes an earlier turn of the conversation (the user asks its
# prompt, the assistant answers its target), then the question. A chat model repeats what it said
# before and treats an unrelated earlier turn as past: frozen SmolLM2-135M on 200 ZsRE edits scores
# Rel 80.2 with it against 68.4 with the LTE template, and keeps its answer to an unrelated question
# (argmax agreement) 68.4% of the time against 50.3%.


def format_facts(statements: Sequence[str]) -> str:
    """One statement as is; several as the numbered list "1. fact\\n2. fact" (LTE §2.1)."""
    if len(statements) == 1:
        return statements[0]
    return "\n".join(f"{i}. {s}" for i, s in enumerate(statements, start=1))


def edit_message(question: str, statements: Sequence[str], template: TextTemplate = "lte") -> str:
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


def prompt_text(
    lm: LanguageModel,
    question: str,
    facts: Sequence[Fact],
    template: TemplateName = "lte",
    *,
    use_chat_template: bool = True,
) -> str:
    """The full prompt for `question` with the admitted edits `facts`: the bare question without facts,
    else the template's message (or, for "dialog", the facts as earlier turns), rendered."""
    if not facts:
        return render(lm, question, use_chat_template=use_chat_template)
    if template != "dialog":
        message = edit_message(question, [statement(p, t) for p, t in facts], template)
        return render(lm, message, use_chat_template=use_chat_template)
    if not (use_chat_template and lm.has_chat_template):
        # No chat template: the facts as plain "prompt target" lines above the question.
        return "\n".join([*(statement(p, t) for p, t in facts), question])
    turns = [
        {"role": role, "content": text} for p, t in facts for role, text in (("user", p), ("assistant", t))
    ]
    text = lm.tokenizer.apply_chat_template(
        [*turns, {"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    return str(text)


def exchange_text(lm: LanguageModel, prompt: str, target: str) -> str:
    """An edit as one finished exchange in the chat template (the user asks `prompt`, the assistant
    answers `target`), after an empty system turn so that the template's default system prompt stays
    out; the statement for a model without a chat template. The recipe backend's "dialog" statement
    tokens."""
    if not lm.has_chat_template:
        return statement(prompt, target)
    turns = [
        {"role": "system", "content": ""},
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": target},
    ]
    return str(lm.tokenizer.apply_chat_template(turns, tokenize=False))


def statement(prompt: str, target: str) -> str:
    """The fact sentence of an edit: the question (or cloze prompt) followed by its answer."""
    return f"{prompt.strip()} {target.strip()}"
