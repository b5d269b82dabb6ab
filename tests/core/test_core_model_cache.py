"""The dequantized-model cache (recall/lm/cache.py): one copy per GGUF content, whatever its path."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from recall.digests import file_sha256
from recall.errors import ModelNotAvailableError
from recall.lm import cache as model_cache
from recall.lm.cache import CACHE_FORMAT, META_FILE, cached_gguf_folder
from recall.lm.loading import load_lm


@pytest.fixture
def builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Point the cache at tmp_path/cache and record each dequantization instead of running transformers."""
    monkeypatch.setenv("RECALL_CACHE_DIR", str(tmp_path / "cache"))
    seen: list[Path] = []

    def fake_dequantize(gguf: Path, into: Path) -> None:
        seen.append(gguf)
        (into / "model.safetensors").write_bytes(gguf.read_bytes())

    monkeypatch.setattr(model_cache, "dequantize", fake_dequantize)
    return seen


def _gguf(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_the_same_weights_in_two_virtualenvs_share_one_copy(tmp_path: Path, builds: list[Path]) -> None:
    first = cached_gguf_folder("m", _gguf(tmp_path / "venv1" / "m.gguf", b"weights"))
    again = cached_gguf_folder("m", tmp_path / "venv1" / "m.gguf")
    second = cached_gguf_folder("m", _gguf(tmp_path / "venv2" / "m.gguf", b"weights"))
    assert first == again == second
    assert builds == [tmp_path / "venv1" / "m.gguf"]  # dequantized once
    meta = json.loads((first / META_FILE).read_text())
    assert meta["format"] == CACHE_FORMAT
    assert first.name == f"m-{meta['sha256'][:12]}"
    assert sorted(p.name for p in first.parent.iterdir()) == [".sources", first.name]


def test_other_weights_at_the_same_path_get_their_own_copy(tmp_path: Path, builds: list[Path]) -> None:
    gguf = _gguf(tmp_path / "m.gguf", b"weights")
    old = cached_gguf_folder("m", gguf)
    gguf.write_bytes(b"newer weights")  # a package upgrade: other size and mtime
    new = cached_gguf_folder("m", gguf)
    assert new != old
    assert (new / "model.safetensors").read_bytes() == b"newer weights"
    assert len(builds) == 2


def test_a_known_file_is_not_hashed_again(
    tmp_path: Path, builds: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = _gguf(tmp_path / "m.gguf", b"weights")
    folder = cached_gguf_folder("m", gguf)

    def no_hashing(path: Path) -> str:
        if Path(path) == gguf:  # the cache's own files are checked on every load; the source is not
            raise AssertionError(f"hashed {path} again")
        return file_sha256(path)

    monkeypatch.setattr(model_cache, "file_sha256", no_hashing)
    assert cached_gguf_folder("m", gguf) == folder
    os.utime(gguf, ns=(1, 1))  # touched: its stamp changes, so it is hashed (and refused here)
    with pytest.raises(AssertionError, match="hashed"):
        cached_gguf_folder("m", gguf)


def test_copies_from_an_older_recall_are_reused_and_deduplicated(tmp_path: Path, builds: list[Path]) -> None:
    gguf = _gguf(tmp_path / "m.gguf", b"weights")
    digest = file_sha256(gguf)
    models = tmp_path / "cache" / "models"
    for key, sha in (("aaaa", digest), ("bbbb", digest), ("cccc", "0" * 64)):
        old = models / f"m-{key}"  # the old layout: named by a stamp of path, size and mtime
        old.mkdir(parents=True)
        (old / "model.safetensors").write_bytes(b"dequantized")
        (old / META_FILE).write_text(json.dumps({"format": CACHE_FORMAT, "source": "x", "sha256": sha}))
    folder = cached_gguf_folder("m", gguf)
    assert builds == []  # one old copy became the new folder
    assert (folder / "model.safetensors").read_bytes() == b"dequantized"
    left = sorted(p.name for p in models.iterdir() if not p.name.startswith("."))
    assert left == sorted(["m-cccc", folder.name])  # the other copy went; other weights stayed


def test_a_failed_dequantization_leaves_nothing_behind(
    tmp_path: Path, builds: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(gguf: Path, into: Path) -> None:
        (into / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("out of disk")

    monkeypatch.setattr(model_cache, "dequantize", broken)
    with pytest.raises(RuntimeError, match="out of disk"):
        cached_gguf_folder("m", _gguf(tmp_path / "m.gguf", b"weights"))
    models = tmp_path / "cache" / "models"
    assert sorted(p.name for p in models.iterdir()) == [".sources"]


@pytest.mark.parametrize("damage", ["altered", "truncated", "missing"])
def test_a_damaged_cache_is_dequantized_again(tmp_path: Path, builds: list[Path], damage: str) -> None:
    """Issue #33.8: a cache whose files changed after they were written loaded and answered wrongly."""
    gguf = _gguf(tmp_path / "m.gguf", b"weights of the model")
    folder = cached_gguf_folder("m", gguf)
    weights = folder / "model.safetensors"
    if damage == "altered":
        weights.write_bytes(b"weightS of the model")  # same size
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:7])
    else:
        weights.unlink()
    assert cached_gguf_folder("m", gguf) == folder
    assert weights.read_bytes() == b"weights of the model"
    assert len(builds) == 2


def test_a_cache_from_before_digests_gets_them_once(tmp_path: Path, builds: list[Path]) -> None:
    gguf = _gguf(tmp_path / "m.gguf", b"weights")
    folder = cached_gguf_folder("m", gguf)
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["files"] == {"model.safetensors": file_sha256(folder / "model.safetensors")}
    del meta["files"]
    (folder / META_FILE).write_text(json.dumps(meta))
    assert cached_gguf_folder("m", gguf) == folder
    assert "files" in json.loads((folder / META_FILE).read_text())
    assert len(builds) == 1


def test_a_damaged_model_folder_names_itself(tmp_path: Path, tiny_model_dir: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short
    with pytest.raises(ModelNotAvailableError, match=r"cannot load the model in .*damaged or incomplete"):
        load_lm(str(broken))
