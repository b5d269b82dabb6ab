"""`recall export-model`: an embedded model as a plain Hugging Face folder that serving engines (vLLM,
`transformers serve`) load: the dequantized float32 weights of recall's cache, its tokenizer and chat
template, the config without the GGUF quantization entry, and a generation config that decodes greedily
and stops where recall stops (EOS and the chat end-of-turn token), so an engine answers as recall does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from recall.errors import ConfigError, MemoryExistsError
from recall.lm.cache import cached_gguf_folder
from recall.lm.loading import EMBEDDED, LanguageModel, load_lm
from recall.lm.scoring import stop_ids
from recall.staging import staging_dir

SKIPPED = ("recall_cache.json",)  # recall's own bookkeeping


def export_model(name: str, into: Path) -> LanguageModel:
    """Write model `name`'s folder at `into` (which must not exist or be empty); returns the model."""
    if name not in EMBEDDED:
        raise ConfigError(
            f"export-model takes an embedded model ({', '.join(EMBEDDED)}); {name!r} is a folder already"
        )
    into = into.expanduser()
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise MemoryExistsError(f"{str(into)!r} exists and is not an empty folder; choose a new path")
    source = cached_gguf_folder(name, EMBEDDED[name]())  # fills and checks the cache, once
    lm = load_lm(str(source))  # its tokenizer and architecture give the stop tokens
    into.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(into.parent, f".{into.name}.exporting-")
    try:
        for file in source.iterdir():
            if file.name not in SKIPPED:
                shutil.copyfile(file, staging / file.name)
        config = json.loads((staging / "config.json").read_text())
        config.pop("quantization_config", None)
        config["_name_or_path"] = name
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        generation = json.loads((staging / "generation_config.json").read_text())
        generation |= {"eos_token_id": stop_ids(lm), "do_sample": False}
        (staging / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        if into.exists():
            into.rmdir()
        staging.rename(into)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return lm
