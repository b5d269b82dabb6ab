"""Child process of the EditMemory crash test: opens (or creates) a memory of BACKEND on the tiny llama
and adds edits one by one, printing each edit_id once add() has returned (acknowledged).

Usage: python memory_crash_writer.py MEMORY_DIR BACKEND FIRST_INDEX STATS_DIR
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from test_memory_crash import edit_of

from recall.backends import get_backend
from recall.config import load_config
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.results import Edit


def tiny_lm() -> LanguageModel:
    """The tests' tiny llama (tests/conftest.py, loaded by path: tests/core/conftest.py shares its name)."""
    spec = importlib.util.spec_from_file_location(
        "tests_root_conftest", Path(__file__).parents[1] / "conftest.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lm: LanguageModel = module.make_tiny_lm(0)
    return lm


def main() -> None:
    path, backend, first, stats = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    lm = tiny_lm()
    if (path / "manifest.json").is_file():
        memory = EditMemory.open(path, lm=lm)
    else:
        tiny = get_backend(backend).cls.tiny_settings
        fixtures = {"{stats_dir}": stats}  # the tiny settings' fixture values this writer can give
        overrides = ["model.name=tiny"]
        overrides += [f"{k}={'null' if v is None else fixtures.get(str(v), v)}" for k, v in tiny.items()]
        memory = EditMemory.create(path, load_config(backend=backend, overrides=overrides), lm=lm)
    print("ready", flush=True)
    # a batched editor (memit, alphaedit) gets add_many calls of two edits: journal entries of two
    size = 2 if getattr(get_backend(backend).cls, "batched", False) else 1
    for i in range(first, first + 1000, size):
        results = memory.add_many([Edit(*edit_of(j)) for j in range(i, i + size)], policy="keep_both")
        for j, result in enumerate(results, start=i):
            print(f"{j} {result.edit_id}", flush=True)


if __name__ == "__main__":
    main()
