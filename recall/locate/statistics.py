"""Second-moment statistics C = E[k kᵀ] of an MLP output projection's inputs (METHODS.md §5.1): the
uncentred moment over every token of an offline corpus (corpus.py), accumulated in float64 and stored
in float32 beside the model cache, one file per layer, with the token count, the condition number and a
digest. ROME's left vector is C⁻¹k*; MEMIT and AlphaEdit need C itself."""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from memory_store.files import atomic_write
from recall.lm.hooks import StopForward, forward_hook, layer_path, resolve_module
from recall.lm.loading import LanguageModel
from recall.lm.scoring import pad_right
from recall.locate.corpus import CorpusSpec, corpus_digest, sample_corpus
from recall.paths import cache_dir


@dataclass(frozen=True)
class SecondMoment:
    """C (d_in, d_in) for one layer's output projection, and where it came from."""

    layer: int
    matrix: torch.Tensor
    tokens: int
    condition: float
    corpus: str  # the corpus's name and token digest
    digest: str  # of the matrix's bytes

    def describe(self) -> str:
        return (
            f"layer {self.layer}: {self.tokens} tokens of {self.corpus}, condition {self.condition:.3g}, "
            f"digest {self.digest}"
        )


def ridged(moment: torch.Tensor) -> torch.Tensor:
    """C (d, d) in float64 plus a 1e-6 ridge relative to its mean eigenvalue: a corpus that never
    activates some input leaves C singular, and C⁻¹ (rome, memit, the diagnostic) must exist."""
    c = moment.double()
    return c + 1e-6 * float(c.diagonal().mean()) * torch.eye(len(c), dtype=c.dtype)


def stats_folder(lm: LanguageModel, spec: CorpusSpec, root: Path | None = None) -> Path:
    """Where a model's statistics over one corpus live (by default beside the dequantized model cache)."""
    return (root or cache_dir() / "stats") / f"{lm.model_id}-{lm.fingerprint[:12]}" / spec.name


def load_moment(
    lm: LanguageModel, layer: int, spec: CorpusSpec, root: Path | None = None
) -> SecondMoment | None:
    """The cached statistics of `layer`, or None when `recall stats` has not computed them."""
    from safetensors import safe_open

    file = stats_folder(lm, spec, root) / f"layer{layer}.safetensors"
    if not file.is_file():
        return None
    with safe_open(str(file), framework="pt") as handle:
        meta: dict[str, str] = handle.metadata()
        matrix = handle.get_tensor("moment")
    return SecondMoment(
        layer, matrix, int(meta["tokens"]), float(meta["condition"]), meta["corpus"], meta["digest"]
    )


def compute_moments(
    lm: LanguageModel,
    layers: Sequence[int],
    spec: CorpusSpec,
    *,
    root: Path | None = None,
    progress: bool = True,
) -> list[SecondMoment]:
    """Sample the corpus, run the base model over it, and write each layer's C (returned in order)."""
    sequences = list(
        tqdm(
            sample_corpus(lm, spec),
            total=spec.samples,
            desc="sampling corpus",
            unit="text",
            disable=not progress,
        )
    )
    corpus = f"{spec.name} ({corpus_digest(sequences)})"
    modules = {layer: resolve_module(lm.model, layer_path(lm.model, "mlp_out", layer)) for layer in layers}
    sums: dict[int, torch.Tensor] = {}
    count = 0
    mask_now: dict[str, torch.Tensor] = {}

    def accumulate(layer: int) -> Any:
        def hook(_m: torch.nn.Module, inputs: tuple[Any, ...], _output: Any) -> None:
            keys = inputs[0][mask_now["mask"].bool()].double()  # (tokens, d_in)
            sums[layer] = sums.get(layer, 0) + keys.T @ keys
            if layer == max(layers):
                raise StopForward  # the layers above the last one are not needed

        return hook

    pad = int(lm.tokenizer.pad_token_id or 0)
    with (
        torch.no_grad(),
        contextlib.ExitStack() as hooks,
        tqdm(total=len(sequences), desc="statistics", unit="text", disable=not progress) as bar,
    ):
        for layer in layers:
            hooks.enter_context(forward_hook(modules[layer], accumulate(layer)))
        for start in range(0, len(sequences), spec.batch):
            chunk = sequences[start : start + spec.batch]
            ids, mask = pad_right(chunk, pad)
            mask_now["mask"] = mask.to(lm.device)
            with contextlib.suppress(StopForward):
                lm.model(input_ids=ids.to(lm.device), attention_mask=mask_now["mask"])
            count += int(mask.sum())
            bar.update(len(chunk))
    moments = []
    for layer in layers:
        matrix = (sums[layer] / count).float().cpu()
        eigen = torch.linalg.eigvalsh(sums[layer] / count)
        condition = float(eigen[-1] / eigen[0]) if float(eigen[0]) > 0 else math.inf
        digest = hashlib.sha256(matrix.numpy().tobytes()).hexdigest()[:16]
        moment = SecondMoment(layer, matrix, count, condition, corpus, digest)
        _write(stats_folder(lm, spec, root) / f"layer{layer}.safetensors", moment)
        moments.append(moment)
    return moments


def _write(file: Path, moment: SecondMoment) -> None:
    from safetensors.torch import save_file

    file.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "tokens": str(moment.tokens),
        "condition": repr(moment.condition),
        "corpus": moment.corpus,
        "digest": moment.digest,
    }
    atomic_write(file, lambda tmp: save_file({"moment": moment.matrix.contiguous()}, str(tmp), metadata=meta))
