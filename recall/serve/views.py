"""recall's values as the JSON the server returns: records, edit results, history, retrievals, and the
`recall` object that tells an OpenAI client which edits shaped an answer."""

from __future__ import annotations

import math
from typing import Any

from memory_store import EditRecord, HistoryEvent, SearchHit
from recall.results import Answer, ConflictPair, EditResult, Retrieval

MAX_LISTED_USED = 50  # a weight editor names every active edit as possibly used


def record_json(record: EditRecord) -> dict[str, Any]:
    return {
        "id": record.edit_id,
        "object": "recall.edit",
        "prompt": record.prompt,
        "target": record.target,
        "subject": record.subject,
        "namespace": record.namespace,
        "status": record.status,
        "created_at": record.created_at,
        "supersedes": record.supersedes,
    }


def hit_json(hit: SearchHit, verdict: str | None = None) -> dict[str, Any]:
    shown = {"id": hit.record.edit_id, "prompt": hit.record.prompt, "target": hit.record.target}
    return shown | {"score": round(hit.score, 6)} | ({"verdict": verdict} if verdict else {})


def result_json(result: EditResult) -> dict[str, Any]:
    return {
        "edit": record_json(result.record),
        "superseded": [record_json(r) for r in result.superseded],
        "kept_beside": [record_json(r) for r in result.conflicts],
        "similar": [hit_json(h) for h in result.similar],
    }


def event_json(event: HistoryEvent) -> dict[str, Any]:
    return {
        "id": event.edit_id,
        "kind": event.kind,
        "at": event.at,
        "reason": event.reason,
        "other": event.other_id,
    }


def conflict_json(pair: ConflictPair) -> dict[str, Any]:
    return {
        "older": record_json(pair.older),
        "newer": record_json(pair.newer),
        "score": round(pair.score, 6),
        "kind": pair.kind,
    }


def _threshold(retrieval: Retrieval) -> float | None:
    return None if math.isnan(retrieval.threshold) else round(retrieval.threshold, 6)


def retrieval_json(retrieval: Retrieval, namespace: str) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "threshold": _threshold(retrieval),
        "read_as": retrieval.view,
        "hits": [hit_json(h, retrieval.verdict(h)) for h in retrieval.hits],
    }


def recall_json(answer: Answer, namespace: str, ignored_messages: int = 0) -> dict[str, Any]:
    """Which edits shaped the answer (with their retrieval scores where the backend reads hits), the
    gate's threshold, and what the backend injected."""
    scored = {h.record.edit_id: h for h in answer.hits}
    used = [
        hit_json(scored[edit_id]) if edit_id in scored else {"id": edit_id}
        for edit_id in answer.used[:MAX_LISTED_USED]
    ]
    return {
        "namespace": namespace,
        "backend": answer.backend,
        "used_memory": answer.used_memory,
        "used": used,
        "used_count": len(answer.used),
        "threshold": _threshold(answer.retrieval),
        "read_as": answer.retrieval.view,
        "admitted": len(answer.retrieval.admitted),
        "injected": answer.injected,
        "ignored_messages": ignored_messages,
        "latency_s": round(answer.latency_s, 6),
    }
