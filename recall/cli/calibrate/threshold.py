"""`recall calibrate`: fit the fixed sentinel's cosine cut-off on ZsRE train (rephrases in, NQ out)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from memory_store import EditRecord, FixedSentinel, MemoryStore
from recall.build import shared_encoder
from recall.config import load_config
from recall.datasets.loading import load_cases
from recall.lm.prompts import statement
from recall.retrieval.descriptors import key_texts


def calibration_scores(data: Path, n: int, device: str = "auto") -> tuple[np.ndarray, np.ndarray, float]:
    """Top-1 scores of in-scope rephrases (right edit retrieved) and of out-of-scope locality questions.

    A rephrase whose top hit is another edit counts as an in-scope score of -1 (it must be rejected
    whatever the threshold), so the false-reject rate includes retrieval misses.
    Returns (in_scope, out_of_scope, retrieval top-1 rate of rephrases).
    """
    config = load_config(backend="lte")  # the fixed cosine threshold is the lte presets' sentinel
    encoder = shared_encoder(config.encoder.name, config.encoder.batch_size, device)
    cases = load_cases(data, "zsre", n=n)
    records = [
        EditRecord(prompt=c.prompt, target=c.target, statement=statement(c.prompt, c.target)) for c in cases
    ]
    texts = [key_texts(r, config.retrieval.keys, config.retrieval.last_sentence) for r in records]
    flat = encoder.encode_keys([t for group in texts for t in group])
    keys, start = [], 0
    for group in texts:
        keys.append(flat[start : start + len(group)])
        start += len(group)
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore.open(Path(tmp) / "m", dim=encoder.dim, encoder_id=encoder.encoder_id, create=True)
        store.add_many(records, keys)
        rephrases = [(i, q) for i, c in enumerate(cases) for q in c.rephrases]
        hits = store.search(encoder.encode_queries([q for _, q in rephrases]), k=1)
        in_scope = [
            h[0].score if h and h[0].record.edit_id == records[i].edit_id else -1.0
            for (i, _), h in zip(rephrases, hits, strict=True)
        ]
        loc = [q for c in cases for q, _ in c.locality]
        out_scope = [h[0].score for h in store.search(encoder.encode_queries(loc), k=1) if h]
        store.close()
    top1 = float(np.mean([s > -1.0 for s in in_scope]))
    return np.asarray(in_scope), np.asarray(out_scope), top1


def run_calibrate(data: Path, *, n: int, target_false_accept: float, device: str = "auto") -> int:
    in_scope, out_scope, top1 = calibration_scores(data, n, device)
    sentinel = FixedSentinel.calibrate(in_scope, out_scope, target_false_accept)
    threshold = sentinel.threshold(np.zeros(1))  # fixed: the same for every query
    false_accept, false_reject = FixedSentinel.rates(threshold, in_scope, out_scope)
    print(f"records {n}, rephrases {len(in_scope)}, locality questions {len(out_scope)}")
    print(f"rephrase retrieval top-1: {top1:.3f}")
    print(f"threshold (min_cosine): {threshold:.4f}")
    print(f"false accepts on locality questions: {false_accept:.4f}")
    print(f"false rejects on rephrases: {false_reject:.4f}")
    print(f"recall/configs/base.yaml:\nsentinel:\n  min_cosine: {threshold:.4f}")
    return 0
