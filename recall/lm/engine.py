"""Generation on a serving engine instead of in this process: an OpenAI-compatible `/v1/completions`
endpoint serving the same model (`recall export-model` writes a folder engines load).

- kind "openai" (any such engine, e.g. `transformers serve`): the prompt goes as the text recall would
  tokenize, rendered with its edits (the lte backends' prefix, or the plain question);
- kind "vllm": the prompt goes as token ids, and a prompt with continuous prompts in front (the recipe
  backend) as `prompt_embeds`: the (L + T, d) input embeddings, torch.save'd and base64-encoded, as vLLM
  reads them when started with `--enable-prompt-embeds`.

Decoding is greedy (temperature 0) and stops at recall's stop tokens, so with no admitted edit the
engine's answer is the base model's. Scoring (teacher-forced) always runs in this process.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

import torch

from recall.errors import RecallError, UnsupportedOperationError
from recall.lm.loading import LanguageModel
from recall.lm.scoring import embed_right, stop_ids

EngineKind = Literal["openai", "vllm"]


class EngineError(RecallError):
    """The engine could not be reached or answered with an error."""


def encode_embeds(embeds: torch.Tensor) -> str:
    """vLLM's prompt_embeds encoding: torch.save of a (T, d) tensor, base64."""
    buffer = io.BytesIO()
    torch.save(embeds.detach().to("cpu").contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_embeds(text: str) -> torch.Tensor:
    tensor = torch.load(io.BytesIO(base64.b64decode(text)), weights_only=True)
    if not isinstance(tensor, torch.Tensor):
        raise EngineError("prompt_embeds did not hold a tensor")
    return tensor


@dataclass(frozen=True)
class CompletionEngine:
    base_url: str  # e.g. http://127.0.0.1:8001/v1
    model: str  # the engine's name for the model
    kind: EngineKind = "openai"
    timeout_s: float = 600.0

    def request(
        self,
        lm: LanguageModel,
        prompt: list[int],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        prefix: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """The /v1/completions body for greedy decoding from `prompt` ids after `prefix` (L, d)."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": max_new_tokens, "temperature": 0.0}
        if self.kind == "vllm":
            body |= {"stop_token_ids": stop_ids(lm), "skip_special_tokens": True}
            body |= {"min_tokens": min_new_tokens} if min_new_tokens else {}
            if prefix is None:
                return body | {"prompt": prompt}
            embeds, _ = embed_right(lm, [prompt], [prefix])  # (1, L + T, d)
            return body | {"prompt_embeds": encode_embeds(embeds[0])}
        if prefix is not None:
            raise UnsupportedOperationError(
                "continuous prompts (the recipe backend) need vLLM's prompt_embeds: use generator kind 'vllm'"
            )
        if min_new_tokens:
            raise UnsupportedOperationError("min_new_tokens needs generator kind 'vllm' (min_tokens)")
        return body | {"prompt": lm.tokenizer.decode(prompt, skip_special_tokens=False)}

    def complete(
        self,
        lm: LanguageModel,
        prompt: list[int],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        prefix: torch.Tensor | None = None,
    ) -> str:
        body = self.request(lm, prompt, max_new_tokens, min_new_tokens, prefix)
        request = urllib.request.Request(
            f"{self.base_url.rstrip('/')}/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise EngineError(f"engine {self.base_url} answered {exc.code}: {exc.read()[:300]!r}") from None
        except (OSError, ValueError) as exc:
            raise EngineError(f"engine {self.base_url} failed: {type(exc).__name__}: {exc}") from None
        try:
            return str(answer["choices"][0]["text"]).strip()
        except (KeyError, IndexError, TypeError):
            raise EngineError(f"engine {self.base_url} sent no completion: {str(answer)[:300]}") from None
