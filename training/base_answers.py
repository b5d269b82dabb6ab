"""The base model's own greedy answers to plain questions: the targets of out_of_scope rows.

Generated in left-padded batches and cached as token ids in the run directory, so a resumed run
does not generate them again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from recall.models import LanguageModel
from recall.prompts import render
from recall.scoring import prompt_ids, stop_ids

CACHE_FILE = "base_answers.json"


@torch.inference_mode()
def base_answers(
    lm: LanguageModel, questions: Sequence[str], max_new_tokens: int, run_dir: Path, batch_size: int = 32
) -> dict[str, list[int]]:
    """question -> the ids the base model generates for it (its stop token included when reached)."""
    cache = run_dir / CACHE_FILE
    answers: dict[str, list[int]] = json.loads(cache.read_text()) if cache.is_file() else {}
    todo = sorted({q for q in questions if q not in answers})
    stop = stop_ids(lm)
    pad = int(lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else stop[0])
    model: Any = lm.model  # generate() is untyped in transformers
    for start in tqdm(range(0, len(todo), batch_size), desc="base answers", unit="batch"):
        chunk = todo[start : start + batch_size]
        prompts = [prompt_ids(lm, render(lm, q, use_chat_template=True)) for q in chunk]
        width = max(len(p) for p in prompts)
        # Left padding: every prompt ends at the last column, where generation continues.
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=lm.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=lm.device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop,
            pad_token_id=pad,
        )
        for question, row in zip(chunk, output[:, width:].tolist(), strict=True):
            ids: list[int] = []
            for token in row:
                ids.append(token)
                if token in stop:
                    break
            answers[question] = ids
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(answers))
        os.replace(tmp, cache)
    return answers
