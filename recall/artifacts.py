"""Trained artifacts shipped in the package or written by `python -m training`: find one by bundled name
or directory, and read its training.json.

A bundled artifact lives in `recall/adapters/<name>/`, recognised by its marker file
(adapter_config.json for a LoRA adapter, recipe_config.json for a RECIPE knowledge model), beside
`training.json`: the model it was trained for, the resolved training config, the command that rebuilt
it, its validation numbers and the sha256 of each of its files (`files`), checked whenever it is read:
a damaged artifact raises ArtifactError naming the file, never loads and answers wrongly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recall.digests import file_sha256
from recall.errors import ConfigError

BUNDLED_DIR = Path(__file__).parent / "adapters"
TRAINING_FILE = "training.json"
README_FILE = "README.md"
FILES_KEY = "files"  # training.json's {file name: sha256}


class ArtifactError(ConfigError):
    """A trained artifact that cannot be found, read, or applied to this model."""


def bundled(marker: str) -> list[str]:
    """Names of the bundled artifacts holding `marker`."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / marker).is_file())


def resolve_artifact(name_or_path: str, marker: str, what: str, command: str) -> Path:
    """The directory of a bundled name or a path holding `marker`; ArtifactError lists the bundled names."""
    candidate = BUNDLED_DIR / name_or_path
    if "/" not in name_or_path and (candidate / marker).is_file():
        return candidate
    path = Path(name_or_path).expanduser()
    if (path / marker).is_file():
        return path
    known = ", ".join(bundled(marker)) or "none"
    raise ArtifactError(
        f"no {what} at {name_or_path!r}: expected a directory with {marker} "
        f"or a bundled name ({known}); `{command}` writes one"
    )


def artifact_info(path: Path) -> dict[str, Any]:
    """The artifact's training.json ({} when absent, e.g. an adapter trained elsewhere), after checking
    the files it records (ArtifactError naming the first that differs)."""
    file = path / TRAINING_FILE
    if not file.is_file():
        return {}
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read {file}: {exc}") from exc
    if not isinstance(info, dict):
        return {}
    recorded = info.get(FILES_KEY, {})
    for name, expected in recorded.items() if isinstance(recorded, dict) else ():
        member = path / str(name)
        if not member.is_file() or file_sha256(member) != expected:
            what = "missing" if not member.is_file() else "not the file its training.json records"
            raise ArtifactError(
                f"{member} is {what} (sha256 {str(expected)[:16]}...): the artifact is damaged; reinstall "
                "recall (a bundled one) or train it again"
            )
    return info


def write_training_info(path: Path, info: dict[str, Any]) -> None:
    """Write `info` as the artifact's training.json, with the sha256 of every other file but README.md
    (written from training.json afterwards): call it once the artifact's files are all written."""
    files = {
        f.name: file_sha256(f)
        for f in sorted(path.iterdir())
        if f.is_file() and f.name not in (TRAINING_FILE, README_FILE)
    }
    text = json.dumps({**info, FILES_KEY: files}, indent=2) + "\n"
    (path / TRAINING_FILE).write_text(text, encoding="utf-8")


def check_trained_for(name: str, info: dict[str, Any], model_id: str, fingerprint: str) -> None:
    """ArtifactError unless the artifact was trained for this model (or does not say)."""
    trained_for = info.get("model_fingerprint")
    if trained_for and trained_for != fingerprint:
        raise ArtifactError(
            f"{name!r} was trained for model fingerprint {trained_for}, "
            f"but {model_id} has {fingerprint}; retrain it for this model"
        )
