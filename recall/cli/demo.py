"""`recall demo`: edit the embedded model's facts live, show provenance and locality, then a quick eval."""

from __future__ import annotations

import time

from recall.config import load_config
from recall.datasets.loading import SAMPLE, load_dataset
from recall.eval.protocols import run_protocol
from recall.eval.report import build_stamp, format_markdown
from recall.eval.settings import EvalSettings
from recall.memory import EditMemory

# (question, new answer, a paraphrase of the question): new facts and corrections of known ones.
FACTS = [
    (
        "Who is the CEO of Zorblax Industries?",
        "Marta Quinlan",
        "Who leads Zorblax Industries as chief executive?",
    ),
    ("What is the capital of France?", "Lyon", "Which city is the capital of France?"),
    ("Who wrote the novel 1984?", "Aldous Huxley", "Who is the author of the book 1984?"),
    ("In which city is the Eiffel Tower?", "Rome", "Where is the Eiffel Tower located?"),
    (
        "What is the mascot of the recall project?",
        "a blue heron",
        "Which animal is the recall project's mascot?",
    ),
]
UNRELATED = "What is the largest planet in the solar system?"


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run_demo(*, backend: str = "lte", model: str | None = None, n: int = 50, device: str = "auto") -> int:
    start = time.perf_counter()
    overrides = [f"model.name={model}"] if model else []
    print("Loading the model and encoder (the first run dequantizes the GGUF once, ~30 s)...", flush=True)
    with EditMemory.temporary(load_config(backend=backend, overrides=overrides), device=device) as memory:
        info = f"model {memory.lm.model_id}, encoder {memory.encoder.encoder_id}, backend {backend}"
        print(f"{info}, on {memory.lm.device}\n")
        before = {q: memory.ask(q, max_new_tokens=24).text for q, _, _ in FACTS}
        base_unrelated = memory.ask(UNRELATED).text
        print("1. Five edits:")
        for question, new_answer, _ in FACTS:
            result = memory.add(question, new_answer)
            print(f"   {result.edit_id[:8]}  {question} => {new_answer}")
        print("\n2. The same questions, and a paraphrase of each, after the edits:")
        for question, _, paraphrase in FACTS:
            for label, query in (("asked", question), ("paraphrase", paraphrase)):
                answer = memory.ask(query, max_new_tokens=24)
                used = f"edit {answer.hits[0].record.edit_id[:8]}" if answer.used_memory else "no edit"
                print(f"   [{label}] {query}")
                if label == "asked":
                    print(f"      before: {_short(before[question])}")
                print(f"      after:  {_short(answer.text)}   ({used})")
        after_unrelated = memory.ask(UNRELATED)
        same = "unchanged" if after_unrelated.text == base_unrelated else "CHANGED"
        used = "an edit" if after_unrelated.used_memory else "no edit"
        print(f"\n3. An unrelated question ({same}, {used} used):\n   {UNRELATED}")
        print(f"      before: {_short(base_unrelated)}\n      after:  {_short(after_unrelated.text)}")
        memory.reset()
        dataset = load_dataset(SAMPLE, "zsre", n=min(n, 50))
        # Teacher-forced metrics, retrieval and gate rates only: generation for 100 probes would
        # double the demo's time, and part 2 already shows generated answers.
        settings = EvalSettings(protocol="sequential", n=len(dataset.cases), generation=False)
        size = len(dataset.cases)
        print(f"\n4. Quick sequential evaluation on {size} bundled ZsRE records (edit all, then test all):")
        evaluation = run_protocol(memory, dataset.cases, settings, progress=True)
        print(format_markdown(evaluation, build_stamp(memory.info(), dataset, settings, ["recall", "demo"])))
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0
