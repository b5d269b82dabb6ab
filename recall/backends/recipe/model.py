"""RECIPE's knowledge model (METHODS.md §1.1): encoder + pooling, MLP_K / MLP_Q, the prompt head MLP_P and
the knowledge sentinel, adapted to the bundled MiniLM and a small LLM.

Differences from the reference code, and why:
- the encoder is MiniLM-L6 (384-d) and only its top `trainable_layers` layers train: the artifact stays
  a few MB and a CPU step stays cheap;
- keys, queries and the sentinel are L2-normalised and compared by cosine (divided by a temperature in
  training): they live in recall's inner-product store next to every other backend's keys, and the
  per-query threshold `cos(query, sentinel)` reads like any other gate's;
- the sentinel's token embeddings go through the encoder's embedding layer (positions added) via
  `inputs_embeds`, the one entry point every transformers version keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

Side = Literal["key", "query"]


StatementForm = Literal["text", "dialog"]  # how an edit's statement tokens read (KnowledgeSettings)


@dataclass(frozen=True)
class KnowledgeSettings:
    """The shape of one knowledge model; saved beside its weights as recipe_config.json."""

    encoder: str  # the base sentence encoder: 'all-minilm-l6-v2' or a Hugging Face BERT folder
    model: str  # the LLM the prompts are made for
    model_fingerprint: str
    llm_hidden: int  # d: the width of each prompt vector
    knowledge_dim: int = 512  # R: the width of keys and queries (RECIPE used 4096 with RoBERTa-base)
    prompt_tokens: int = 3  # L_p
    # Up to this many of the statement's own LLM token embeddings follow the L_p vectors (0: RECIPE's
    # prompt-only form). Three vectors from a 2-layer MLP could not spell unseen names into a frozen
    # 135M model (held-out token accuracy 0.46); the learned vectors now teach it to use the tokens.
    statement_tokens: int = 0
    # How those tokens read: "text", the statement "Q? A"; "dialog", the edit as an earlier chat
    # exchange (recall/lm/prompts.py: exchange_text), which a frozen chat model repeats more faithfully.
    statement_form: StatementForm = "text"
    sentinel_tokens: int = 10
    # A key is admitted when its cosine beats cos(query, sentinel) by this much (0 in RECIPE). Training
    # calibrates it on held-out locality questions against every training key (`calibrate_margin`).
    sentinel_margin: float = 0.0
    trainable_layers: int = 2  # top encoder layers that train; the rest stay as shipped
    max_text_tokens: int = 64  # encoder inputs are truncated to this many tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ResidualMLP(nn.Module):
    """RECIPE's MLP_K / MLP_Q: x1 = W1 x, out = x1 + ReLU(W2 x1).

    W1 starts as the identity on the masked-mean block of the pooled features (`identity_at`: its
    first input column) and W2 near zero, so an untrained head gives MiniLM's own mean-pooled sentence
    embedding, already a good retriever. From a random start the keys collapsed (mean pairwise cosine
    0.97 after 100 steps) within our CPU budget.
    """

    def __init__(self, dim_in: int, dim_out: int, identity_at: int, identity_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)
        self.block = nn.Linear(dim_out, dim_out)
        size = min(identity_size, dim_out)
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.weight[torch.arange(size), identity_at + torch.arange(size)] = 1.0
            self.proj.bias.zero_()
            nn.init.normal_(self.block.weight, std=1e-3)
            self.block.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.proj(x)
        out: torch.Tensor = x1 + torch.relu(self.block(x1))
        return out


class PromptHead(nn.Module):
    """RECIPE's MLP_P: r_k (B, R) -> y = r_k + ReLU(W r_k) -> (B, L_p, d) prompt vectors."""

    def __init__(self, dim: int, prompt_tokens: int, llm_hidden: int, init_scale: float) -> None:
        super().__init__()
        self.prompt_tokens, self.llm_hidden = prompt_tokens, llm_hidden
        self.block = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, prompt_tokens * llm_hidden)
        # Start at the scale of the LLM's token embeddings, so the first prompts look like tokens.
        nn.init.normal_(self.out.weight, std=init_scale / dim**0.5)
        nn.init.zeros_(self.out.bias)

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        y = keys + torch.relu(self.block(keys))
        prompts: torch.Tensor = self.out(y).view(-1, self.prompt_tokens, self.llm_hidden)
        return prompts


class KnowledgeModel(nn.Module):
    """Texts -> keys (knowledge side) or queries (question side), the sentinel key, and prompts."""

    def __init__(self, settings: KnowledgeSettings, bert: Any, tokenizer: Any, embed_scale: float) -> None:
        super().__init__()
        self.settings = settings
        self.bert = bert  # a transformers BertModel (MiniLM); its lower layers stay frozen
        self.tokenizer = tokenizer
        width = int(bert.config.hidden_size)
        pooled = 4 * width  # [first token; mean; max; min] (RECIPE's compute_reps)
        # The masked mean sits at columns [width, 2 * width) of the pooled features (see _pool).
        self.mlp_k = ResidualMLP(pooled, settings.knowledge_dim, width, width)
        self.mlp_q = ResidualMLP(pooled, settings.knowledge_dim, width, width)
        self.prompt_head = PromptHead(
            settings.knowledge_dim, settings.prompt_tokens, settings.llm_hidden, embed_scale
        )
        # Θ: the sentinel's token embeddings, uniform in [-0.05, 0.05] as in RECIPE.
        self.sentinel = nn.Parameter(torch.empty(settings.sentinel_tokens, width).uniform_(-0.05, 0.05))
        self.bert.requires_grad_(False)
        for layer in self.trainable_encoder_layers():
            layer.requires_grad_(True)

    def train(self, mode: bool = True) -> KnowledgeModel:
        """Train the heads; the encoder always runs without dropout, as at inference."""
        super().train(mode)
        self.bert.eval()
        return self

    def trainable_encoder_layers(self) -> list[nn.Module]:
        layers = list(self.bert.encoder.layer)
        count = self.settings.trainable_layers
        return layers[len(layers) - count :] if count > 0 else []

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every trained tensor by name: the heads, the sentinel and the top encoder layers, what the
        artifact stores (the frozen rest of the encoder is not in it), whatever trains at the moment."""
        top = {id(p) for layer in self.trainable_encoder_layers() for p in layer.parameters()}
        names = {n for n, p in self.named_parameters() if not n.startswith("bert.") or id(p) in top}
        return {n: t.detach().contiguous() for n, t in self.state_dict().items() if n in names}

    def pooled(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, 4 * encoder width): [first token; masked mean; masked max; masked min]."""
        device = self.sentinel.device
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.settings.max_text_tokens,
            return_tensors="pt",
        )
        mask = batch["attention_mask"].to(device)
        hidden = self.bert(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
        return _pool(hidden, mask)

    def encode(self, texts: Sequence[str], side: Side) -> torch.Tensor:
        """Un-normalised representations (B, R): MLP_K for knowledge statements, MLP_Q for queries."""
        pooled = self.pooled(texts)
        return self.mlp_k(pooled) if side == "key" else self.mlp_q(pooled)  # type: ignore[no-any-return]

    def sentinel_key(self) -> torch.Tensor:
        """r_Θ (1, R): the sentinel scored like a stored knowledge item."""
        ones = torch.ones(1, self.sentinel.shape[0], dtype=torch.long, device=self.sentinel.device)
        hidden = self.bert(inputs_embeds=self.sentinel[None], attention_mask=ones).last_hidden_state
        return self.mlp_k(_pool(hidden, ones))  # type: ignore[no-any-return]

    def prompts(self, keys: torch.Tensor) -> torch.Tensor:
        """(B, L_p, d) continuous prompts from un-normalised keys (B, R)."""
        return self.prompt_head(keys)  # type: ignore[no-any-return]


def _pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, H), mask (B, T) -> (B, 4H)."""
    keep = mask[..., None].to(hidden.dtype)  # (B, T, 1)
    mean = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1.0)
    very = torch.finfo(hidden.dtype).max
    high = hidden.masked_fill(keep == 0, -very).amax(1)
    low = hidden.masked_fill(keep == 0, very).amin(1)
    return torch.cat([hidden[:, 0], mean, high, low], dim=-1)
