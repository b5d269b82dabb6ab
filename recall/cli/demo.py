"""`recall demo`: edit the embedded model's facts live, check each answer and its provenance, show an
unrelated question unchanged, then a quick eval; ends with a short table."""

from __future__ import annotations

import time

from recall.config import load_config
from recall.datasets.loading import SAMPLE, load_dataset
from recall.eval.metrics import contains_match
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
ANSWER_TOKENS = 24


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run_demo(
    *, backend: str | None = None, model: str | None = None, n: int = 50, device: str = "auto"
) -> int:
    start = time.perf_counter()
    overrides = [f"model.name={model}"] if model else []
    print("Loading the model and encoder (the first run dequantizes the GGUF once, ~30 s)...", flush=True)
    with EditMemory.temporary(load_config(backend=backend, overrides=overrides), device=device) as memory:
        name = memory.backend.name
        info = f"model {memory.lm.model_id}, encoder {memory.encoder.encoder_id}, backend {name}"
        print(f"{info}, on {memory.lm.device}\n")
        before = {q: memory.ask(q, max_new_tokens=ANSWER_TOKENS).text for q, _, _ in FACTS}
        base_unrelated = memory.ask(UNRELATED).text
        print("1. Five edits:")
        edit_ids = {}
        for question, new_answer, _ in FACTS:
            edit_ids[question] = memory.add(question, new_answer).edit_id
            print(f"   {edit_ids[question][:8]}  {question} => {new_answer}")
        print("\n2. The same questions, and a paraphrase of each, after the edits")
        print("   (ok: the answer holds the new one and names its edit as the one used):")
        right = {"asked": 0, "paraphrase": 0}
        for question, new_answer, paraphrase in FACTS:
            for label, query in (("asked", question), ("paraphrase", paraphrase)):
                answer = memory.ask(query, max_new_tokens=ANSWER_TOKENS)
                used = ", ".join(f"edit {i[:8]}" for i in answer.used) or "no edit"
                ok = contains_match(answer.text, new_answer) and edit_ids[question] in answer.used
                right[label] += ok
                print(f"   [{label}] {query}")
                if label == "asked":
                    print(f"      before: {_short(before[question])}")
                print(f"      after:  {_short(answer.text)}   ({used}) {'ok' if ok else 'MISSED'}")
        after_unrelated = memory.ask(UNRELATED)
        unchanged = after_unrelated.text == base_unrelated and not after_unrelated.used_memory
        print(f"\n3. An unrelated question ({'unchanged, no edit used' if unchanged else 'CHANGED'}):")
        print(f"   {UNRELATED}")
        print(f"      before: {_short(base_unrelated)}\n      after:  {_short(after_unrelated.text)}")
        memory.reset()
        dataset = load_dataset(SAMPLE, "zsre", n=min(n, 50))
        # Teacher-forced metrics, retrieval and gate rates only: generation for 100 probes would
        # double the demo's time, and part 2 already shows generated answers.
        settings = EvalSettings(protocol="sequential", n=len(dataset.cases), generation=False)
        size = len(dataset.cases)
        print(f"\n4. Quick sequential evaluation on {size} bundled ZsRE records (edit all, then test all):")
        evaluation = run_protocol(memory, dataset.cases, settings, progress=True)
        stamp = build_stamp(memory.info(), dataset, settings, ["recall", "demo"])
        print(format_markdown(evaluation, stamp, brief=True))
        summary = evaluation.summary
    rel, gen, loc = (f"{summary[k]:.1f}" for k in ("Rel", "Gen", "Loc"))
    print("| backend | questions answered | paraphrases answered | unrelated unchanged | Rel | Gen | Loc |")
    print("|---|---:|---:|---|---:|---:|---:|")
    print(
        f"| {name} | {right['asked']}/{len(FACTS)} | {right['paraphrase']}/{len(FACTS)} | "
        f"{'yes' if unchanged else 'no'} | {rel} | {gen} | {loc} |"
    )
    elapsed = time.perf_counter() - start
    print(f"\ndemo finished in {elapsed:.0f} s; `recall eval --help` explains the metrics")
    return 0
