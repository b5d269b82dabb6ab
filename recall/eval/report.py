"""Write an EvalResult as JSON (summary, rows, stamp) and as a markdown table; build the stamp."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recall.datasets.loading import EvalDataset
from recall.errors import RecallError
from recall.eval.settings import EvalSettings
from recall.eval.summary import SUBSETS, SUMMARY_KEYS, Summary

if TYPE_CHECKING:
    from recall.eval.protocols import EvalResult

# Report JSON layout version: bump when a key is renamed or its meaning changes.
REPORT_FORMAT_VERSION = 1

_HEADLINE = ("n", "Rel", "Gen", "Loc", "Port", "ES", "PS", "NS", "gen_em", "fluency")
# A long-form run's headline adds its four scores (UnKEBench: question and paraphrase).
_LONG_FORM = ("lf_rouge_l", "lf_rouge_l_rephrase", "lf_similarity", "lf_similarity_rephrase")
_COUNTS = {"n", "n_noop"}
# The subset table: the headline accuracies, then where retrieval and the gate lose a rephrase's own edit.
_SUBSET_COLUMNS = (
    "n",
    "Rel",
    "Gen",
    "Loc",
    "Port",
    "retrieval_top1_rephrase",
    "gate_false_reject_rephrase",
    "gate_false_accept_loc",
)


def build_stamp(
    info: Mapping[str, Any],
    dataset: EvalDataset,
    settings: EvalSettings,
    command_line: Sequence[str],
    *,
    shuffle: bool = False,
) -> dict[str, Any]:
    """Everything needed to reproduce and compare a run: memory, data file, protocol, time, command."""
    return {
        "memory": dict(info),  # model/encoder ids and fingerprints, backend, config, recall version
        "data": {
            "path": str(dataset.path),
            "resolved_path": str(dataset.path.resolve()),
            "sha256": dataset.sha256,
            "format": dataset.format,
            "num_records": dataset.num_records,
            "records_used": dataset.records_used,  # what the n cases came from (fewer, for MQuAKE)
            "shuffled": shuffle,
            "skipped_records": list(dataset.skipped),  # empty prompt or target
            "target_words": list(dataset.target_words) if dataset.target_words else None,
        },
        "settings": dataclasses.asdict(settings),
        "protocol": settings.protocol,
        "n": len(dataset.cases) if settings.n is None else min(settings.n, len(dataset.cases)),
        "seed": settings.seed,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command_line": shlex.join(command_line),
    }


def _finite(value: Any) -> Any:
    """NaN/inf become None: JSON has no NaN, and a report must load in any JSON reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def report_dict(result: EvalResult, stamp: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document of a run."""
    document = {
        "format_version": REPORT_FORMAT_VERSION,
        "summary": dict(result.summary),
        "summary_keys": SUMMARY_KEYS,
        "timings_s": dict(result.timings_s),
        "subsets": {name: dict(summary) for name, summary in result.subsets.items()},
        "subset_keys": {name: SUBSETS[name] for name in result.subsets},
        "stamp": dict(stamp),
        "rows": [dataclasses.asdict(row) for row in result.rows],
    }
    return dict(_finite(document))


def _format_value(key: str, value: float | int | None) -> str:
    if value is None:
        return "–"
    if key in _COUNTS:
        return str(int(value))
    if key == "S" or key.endswith("_ms") or key == "fluency":
        return f"{value:.1f}"
    return f"{value:.2f}"


def _backend_label(memory: Mapping[str, Any], default: str) -> str:
    """The backend's name, with the trained artifact its describe() names (lte+lte-smollm2-135m,
    recipe+recipe-smollm2-135m); reports from before describe() name it in the backend config."""
    detail = memory.get("backend_detail")
    adapter = detail.get("artifact") if isinstance(detail, Mapping) else None
    backend_config = memory.get("config", {}).get("backend", {})
    if adapter is None and isinstance(backend_config, Mapping):
        adapter = backend_config.get("adapter") or backend_config.get("checkpoint")
    name = str(memory.get("backend", default))
    return f"{name}+{Path(str(adapter)).name}" if adapter else name


def _memory_line(stamp: Mapping[str, Any]) -> str:
    memory = stamp.get("memory", {})
    parts = [f"backend `{_backend_label(memory, '?')}`"]
    for name in ("model", "encoder"):
        if name in memory:
            fingerprint = str(memory.get(f"{name}_fingerprint", ""))[:12]
            parts.append(f"{name} `{memory[name]}`" + (f" ({fingerprint})" if fingerprint else ""))
    if "recall_version" in memory:
        parts.append(f"recall {memory['recall_version']}")
    return " · ".join(parts)


# Summary keys about the memory's retrieval and gate: measured for every memory, meaningful only for a
# backend that answers from retrieved edits.
_RETRIEVAL_KEYS = ("retrieval_", "gate_", "review_")


def reads_hits(stamp: Mapping[str, Any]) -> bool:
    """Whether the run's backend answers from retrieved hits (USES_RETRIEVAL): the gate's rates of an
    in-model editor (rome, ft, grace's ε-balls) describe a retrieval it never uses."""
    from recall.backends import Capability, get_backend, registered_backends

    name = str(stamp.get("memory", {}).get("backend", ""))
    if name not in registered_backends():
        return True  # a memory recall does not know: show what it measured
    return Capability.USES_RETRIEVAL in get_backend(name).capabilities


def format_markdown(result: EvalResult, stamp: Mapping[str, Any], *, brief: bool = False) -> str:
    """A headline table, then every summary metric with what it means (not when `brief`), then the
    provenance."""
    summary = result.summary
    data = stamp.get("data", {})
    settings = result.settings
    title = f"recall eval: {Path(str(data.get('path', '?'))).name} ({data.get('format', '?')})"
    batch = f", batch size {settings.batch_size}" if settings.protocol != "single" else ""
    headline = _HEADLINE + (_LONG_FORM if summary.get("lf_rouge_l") is not None else ())
    lines = [
        f"## {title}, {settings.protocol}{batch}, n={summary.get('n')}",
        "",
        "| " + " | ".join(headline) + " |",
        "|" + "---:|" * len(headline),
        "| " + " | ".join(_format_value(k, summary.get(k)) for k in headline) + " |",
    ]
    if not brief:
        retrieval = reads_hits(stamp)
        lines += ["", "| metric | value | meaning |", "|---|---:|---|"]
        lines += [
            f"| {k} | {_format_value(k, summary.get(k))} | {meaning} |"
            for k, meaning in SUMMARY_KEYS.items()
            if retrieval or not k.startswith(_RETRIEVAL_KEYS)
        ]
        if not retrieval:
            name = stamp.get("memory", {}).get("backend", "?")
            lines += ["", f"(retrieval and gate rates left out: {name} answers from the model it edited)"]
        lines += _subset_table(summary, result.subsets)
    records = data.get("records_used")
    lines += [
        "",
        _memory_line(stamp),
        f"data `{data.get('path', '?')}` sha256 {str(data.get('sha256', '?'))[:12]}"
        + (f" · {records} records" if records is not None and records != summary.get("n") else "")
        + (" (shuffled)" if data.get("shuffled") else "")
        + f" · seed {stamp.get('seed', settings.seed)} · {stamp.get('timestamp', '')}",
    ]
    if stamp.get("command_line"):
        lines.append(f"command: `{stamp['command_line']}`")
    return "\n".join(lines) + "\n"


def _subset_table(summary: Summary, subsets: Mapping[str, Summary]) -> list[str]:
    """The whole run beside each case subset (no lines when the run has none), then what each holds."""
    if not subsets:
        return []
    rows = [("all", summary), *subsets.items()]
    lines = [
        "",
        "| cases | " + " | ".join(_SUBSET_COLUMNS) + " |",
        "|---|" + "---:|" * len(_SUBSET_COLUMNS),
    ]
    lines += [
        f"| {name} | " + " | ".join(_format_value(k, values.get(k)) for k in _SUBSET_COLUMNS) + " |"
        for name, values in rows
    ]
    return [*lines, "", *(f"- {name}: {SUBSETS[name]}" for name in subsets)]


def _report_stem(stamp: Mapping[str, Any], result: EvalResult) -> str:
    data = Path(str(stamp.get("data", {}).get("path", "data"))).stem
    backend = _backend_label(stamp.get("memory", {}), "memory")
    when = re.sub(r"[^0-9TZ]", "", str(stamp.get("timestamp", ""))) or "now"
    stem = f"eval-{data}-{backend}-{result.settings.protocol}-n{result.summary.get('n')}-{when}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)


def write_report(result: EvalResult, out_dir: str | Path, stamp: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write `<stem>.json` and `<stem>.md` under out_dir (created if needed); never overwrite a report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = _report_stem(stamp, result)
    suffix = 1
    while (out / f"{stem}.json").exists() or (out / f"{stem}.md").exists():
        suffix += 1
        stem = f"{_report_stem(stamp, result)}-{suffix}"
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    # default=str: a Path or enum in memory.info()["config"] must not lose a finished run at the last step.
    json_path.write_text(
        json.dumps(report_dict(result, stamp), indent=2, ensure_ascii=False, allow_nan=False, default=str)
        + "\n",
        encoding="utf-8",
    )
    md_path.write_text(format_markdown(result, stamp), encoding="utf-8")
    return json_path, md_path


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report JSON back (for comparisons and tests)."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(document, dict) or "summary" not in document:
        raise RecallError(f"{path}: not a recall eval report (no 'summary' key)")
    return document
