"""A comparison's report: every cell's headline beside the others and beside the peer rows, as JSON and
markdown, with the stamp every figure carries (model, encoder, data, protocol, seed, version)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recall.eval.peers import PEER_METRICS, PeerRow, Peers
from recall.eval.report import reads_hits

# Comparison JSON layout version: bump when a key is renamed or its meaning changes.
COMPARISON_FORMAT_VERSION = 1

# What a cell's memory is, as the comparison JSON repeats it (the cell file has everything).
_MEMORY_KEYS = ("model", "model_fingerprint", "encoder", "encoder_fingerprint", "backend_detail")
# (summary key, column title): always shown.
_COLUMNS = (
    ("Rel", "Rel"),
    ("Gen", "Gen"),
    ("Loc", "Loc"),
    ("Port", "Port"),
)
# Shown when some cell measured them.
_OPTIONAL = (
    ("gen_em", "gen EM"),
    ("lf_rouge_l", "Rouge-L q"),
    ("lf_rouge_l_rephrase", "Rouge-L para"),
    ("lf_similarity", "MiniLM sim q"),
    ("lf_similarity_rephrase", "MiniLM sim para"),
    ("gate_false_accept_loc", "false accept %"),
    ("gate_false_reject_rephrase", "false reject %"),
    ("edit_latency_p50_ms", "edit p50 ms"),
    ("ask_latency_mean_ms", "ask mean ms"),
)


# The retrieval gate's rates: measured for every memory, meaningful only for a backend that reads hits.
GATE_KEYS = ("gate_false_accept_loc", "gate_false_reject_rephrase")


def shown_value(document: Mapping[str, Any], key: str) -> Any:
    """The cell's summary value for `key`, or None for a gate rate of a backend that reads no hits."""
    if key in GATE_KEYS and not reads_hits(document.get("stamp", {})):
        return None
    return document.get("summary", {}).get(key)


def _number(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def stamp_line(documents: Sequence[Mapping[str, Any]]) -> str:
    """One line naming what every cell ran on: model(s) and encoder(s) with fingerprints, the data file
    and its sha256, protocol, seed and recall's version."""
    memories = [d.get("stamp", {}).get("memory", {}) for d in documents]
    parts: list[str] = []
    for name in ("model", "encoder"):
        seen = sorted({f"{m.get(name)} ({str(m.get(name + '_fingerprint', ''))[:12]})" for m in memories})
        parts.append(f"{name} {', '.join(seen)}")
    first = documents[0].get("stamp", {}) if documents else {}
    data = first.get("data", {})
    versions = sorted({str(m.get("recall_version")) for m in memories})
    parts.append(f"data {Path(str(data.get('path', '?'))).name} sha256 {str(data.get('sha256', '?'))[:12]}")
    parts.append(f"{first.get('protocol', '?')}, seed {first.get('seed', '?')}")
    parts.append(f"recall {', '.join(versions)}")
    return " · ".join(parts)


def _shown_columns(documents: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    measured = [
        (key, title) for key, title in _OPTIONAL if any(shown_value(d, key) is not None for d in documents)
    ]
    return [*_COLUMNS, *measured]


def comparison_dict(
    documents: Sequence[Mapping[str, Any]],
    peers: Peers | None,
    peer_rows: Sequence[PeerRow],
    *,
    command_line: str,
    figures: Sequence[str],
) -> dict[str, Any]:
    """The comparison's JSON: every cell's summary and timings (the whole report is in its cell file), the
    peer rows shown (with their provenance), the figures, the stamp and the command that makes it all."""
    first = documents[0].get("stamp", {}) if documents else {}
    return {
        "format_version": COMPARISON_FORMAT_VERSION,
        "stamp": stamp_line(documents),
        "command_line": command_line,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": first.get("data", {}),
        "cells": [
            {
                "backend": d["cell"]["backend"],
                "n": d["cell"]["n"],
                "summary": d.get("summary", {}),
                "timings_s": d.get("timings_s", {}),
                "eval_command": d.get("stamp", {}).get("command_line"),
                "memory": {k: d.get("stamp", {}).get("memory", {}).get(k) for k in _MEMORY_KEYS},
            }
            for d in documents
        ],
        "peers": None
        if peers is None or not peer_rows
        else {
            "about": peers.about,
            "source": peers.source,
            "rows": [
                {"tool": r.tool, "method": r.method, "n": r.n, **r.metrics}
                | {"s_per_edit": r.s_per_edit, "note": r.note}
                for r in peer_rows
            ],
        },
        "figures": list(figures),
    }


def format_comparison(
    documents: Sequence[Mapping[str, Any]],
    peers: Peers | None,
    peer_rows: Sequence[PeerRow],
    *,
    command_line: str,
    figures: Mapping[str, str],
) -> str:
    """The markdown: the table of cells, the peer table, each figure with what it shows and the command
    under it, and where each cell's full report is."""
    first = documents[0].get("stamp", {}) if documents else {}
    data = first.get("data", {})
    ns = sorted({int(d["cell"]["n"]) for d in documents})
    columns = _shown_columns(documents)
    lines = [
        f"# recall report: {Path(str(data.get('path', '?'))).name} ({data.get('format', '?')}), "
        f"{first.get('protocol', '?')}, T = {', '.join(map(str, ns))}",
        "",
        stamp_line(documents),
        "",
        "| backend | T | " + " | ".join(title for _, title in columns) + " | eval min |",
        "|---|---:|" + "---:|" * (len(columns) + 1),
    ]
    for document in documents:
        total = document.get("timings_s", {}).get("total")
        lines.append(
            f"| {document['cell']['backend']} | {document['cell']['n']} | "
            + " | ".join(
                _number(shown_value(document, key), 1 if key.endswith("_ms") else 2) for key, _ in columns
            )
            + f" | {_number(None if total is None else total / 60.0, 1)} |"
        )
    if peers is not None and peer_rows:
        lines += [
            "",
            f"Measured elsewhere, not by recall: {peers.about} Source: {peers.source}.",
            "",
            "| peer (measured elsewhere) | T | " + " | ".join(PEER_METRICS) + " | s/edit | note |",
            "|---|---:|" + "---:|" * (len(PEER_METRICS) + 1) + "---|",
        ]
        lines += [
            f"| {row.tool} {row.method} | {row.n} | "
            + " | ".join(_number(row.metrics.get(k), 1) for k in PEER_METRICS)
            + f" | {_number(row.s_per_edit, 2)} | {row.note} |"
            for row in peer_rows
        ]
    for name, caption in figures.items():
        lines += ["", f"![{caption}]({name})", "", f"{caption}. Made by: `{command_line}`"]
    lines += [
        "",
        "Each cell's full report (every metric, its meaning, the subsets) is `cells/<backend>-n<T>.md`; "
        "the `recall eval` command in it makes that cell alone. Rel, Gen, Port: teacher-forced token "
        "accuracy; Loc: agreement with the unedited model (EasyEdit's definitions); false accept: a "
        "locality question admitted to some edit; false reject: a rephrase whose own edit was not admitted.",
    ]
    return "\n".join(lines) + "\n"


def write_comparison(out_dir: Path, document: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """report.json and report.md under out_dir (replaced: they are rebuilt from the cells each time)."""
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(
        json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    md_path.write_text(markdown, encoding="utf-8")
    return json_path, md_path
