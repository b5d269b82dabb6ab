"""Peer rows: other tools' editors measured on recall's model and records, shown beside recall's own runs.

The bundled file (recall/data/peers-easyedit-smollm2-135m.json, provenance in recall/data/README.md) holds
EasyEdit's numbers on SmolLM2-135M and the first N zsRE eval records. A peer row is shown only beside runs
on the same data bytes (sha256), model and protocol: anything else would compare different things.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recall.errors import ConfigError

BUNDLED_PEERS = Path(__file__).parent.parent / "data" / "peers-easyedit-smollm2-135m.json"

# The metrics a peer row may carry, as named in recall's eval summary.
PEER_METRICS = ("Rel", "Gen", "Loc", "Port")


@dataclass(frozen=True, slots=True)
class PeerRow:
    """One peer method at one N: its metrics (None where not measured) and seconds per edit."""

    tool: str  # whose implementation: "EasyEdit"
    method: str
    n: int
    metrics: dict[str, float | None]
    s_per_edit: float | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Peers:
    """A peer file: where its numbers come from, what they were measured on, and its rows."""

    about: str
    tool: str
    source: str
    model: str
    data_file: str
    data_sha256: str
    protocol: str
    rows: tuple[PeerRow, ...]

    def matching(self, *, data_sha256: str, model: str, protocol: str) -> tuple[PeerRow, ...]:
        """The rows that compare with runs on these data bytes, model and protocol (none otherwise)."""
        if (data_sha256, model, protocol) != (self.data_sha256, self.model, self.protocol):
            return ()
        return self.rows


def _row(raw: Mapping[str, Any], tool: str, path: Path) -> PeerRow:
    try:
        return PeerRow(
            tool=tool,
            method=str(raw["method"]),
            n=int(raw["n"]),
            metrics={k: None if raw.get(k) is None else float(raw[k]) for k in PEER_METRICS},
            s_per_edit=None if raw.get("s_per_edit") is None else float(raw["s_per_edit"]),
            note=str(raw.get("note", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{path}: a peer row needs method, n and numeric metrics ({exc}): {dict(raw)}"
        ) from None


def load_peers(path: str | Path = BUNDLED_PEERS) -> Peers:
    """Read a peer file (the bundled EasyEdit one by default).

    Raises:
        ConfigError: the file is missing, not JSON, or lacks a field; the message names it.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such peer file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON peer file ({exc})") from None
    try:
        return Peers(
            about=str(raw["about"]),
            tool=str(raw["tool"]),
            source=str(raw["source"]),
            model=str(raw["model"]),
            data_file=str(raw["data_file"]),
            data_sha256=str(raw["data_sha256"]),
            protocol=str(raw["protocol"]),
            rows=tuple(_row(row, str(raw["tool"]), path) for row in raw["rows"]),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: a peer file needs about, tool, source, model, data_file, data_sha256, protocol and "
            f"rows (missing or malformed: {exc})"
        ) from None
