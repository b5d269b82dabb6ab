"""Long answers scored as UnKEBench and AnyEdit score them (TrustedLLM/UnKE code/evaluate.py, AnyEdit's
summarize_uns): ROUGE-L *recall* of the reference answer by the generated one, with the `rouge` package
they use, and the cosine of the two texts' all-MiniLM-L6-v2 sentence embeddings (what they call "BERT
Score"; MiniLM reads at most 256 word pieces of each text, theirs too). Both for the answer to the
question and to its paraphrase."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from rouge import Rouge

from recall.retrieval.encoder import Encoder

SIMILARITY_ENCODER = "all-minilm-l6-v2"
_WORD = re.compile(r"\w")


def rouge_l_recall(prediction: str, reference: str) -> float:
    """The share of the reference's longest common subsequence of words the prediction covers, in
    [0, 1]; 0 for a prediction without a word (`rouge` refuses those)."""
    if not _WORD.search(prediction) or not _WORD.search(reference):
        return 0.0
    try:
        return float(Rouge().get_scores(prediction, reference)[0]["rouge-l"]["r"])
    except ValueError:  # its tokenizer emptied the text (punctuation only)
        return 0.0


def similarities(encoder: Encoder, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Cosine of each prediction's and reference's sentence embeddings, in [-1, 1]."""
    if not predictions:
        return []
    left = encoder.encode_queries(list(predictions))  # (n, dim), L2-normalised
    right = encoder.encode_queries(list(references))
    return [float(v) for v in np.sum(left * right, axis=1)]


def answer_tokens(target: str) -> int:
    """A generation budget for a long target: ~1.5 tokens a word (SmolLM2's BPE on UnKEBench answers:
    1.3) and room to finish the sentence; AnyEdit generates up to 512 tokens on a GPU."""
    return int(1.5 * len(target.split())) + 16
