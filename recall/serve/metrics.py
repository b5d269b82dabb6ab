"""The server's counters, written in the Prometheus text exposition format (version 0.0.4) for
`GET /metrics`: requests by route and status, request latency as a histogram, edits by operation,
answers and how many used an edit (the admitted share)."""

from __future__ import annotations

import bisect
import threading
from collections import Counter

# Seconds; a CPU answer takes 0.1-5 s, an edit 10 ms to seconds (weight editors).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._latency: dict[str, list[int]] = {}  # route -> count per bucket (+Inf last)
        self._latency_sum: dict[str, float] = {}
        self._edits: Counter[str] = Counter()
        self._answers = 0
        self._answers_with_edit = 0

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, status)] += 1
            counts = self._latency.setdefault(route, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._latency_sum[route] = self._latency_sum.get(route, 0.0) + seconds

    def edit(self, operation: str, count: int = 1) -> None:
        with self._lock:
            self._edits[operation] += count

    def answer(self, used_edit: bool) -> None:
        with self._lock:
            self._answers += 1
            self._answers_with_edit += used_edit

    def render(self, active_edits: int) -> str:
        """The exposition text; `active_edits` is read from the store by the caller."""
        lines: list[str] = []

        def family(name: str, kind: str, text: str) -> None:
            lines.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])

        with self._lock:
            family("recall_requests_total", "counter", "HTTP requests by route and status code.")
            for (route, status), n in sorted(self._requests.items()):
                lines.append(f'recall_requests_total{{route="{route}",status="{status}"}} {n}')
            family(
                "recall_request_seconds", "histogram", "Request latency by route (a stream: until it starts)."
            )
            for route, counts in sorted(self._latency.items()):
                total = 0
                for bound, n in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
                    total += n
                    lines.append(f'recall_request_seconds_bucket{{route="{route}",le="{bound}"}} {total}')
                lines.append(f'recall_request_seconds_sum{{route="{route}"}} {self._latency_sum[route]:.6f}')
                lines.append(f'recall_request_seconds_count{{route="{route}"}} {total}')
            family("recall_edits_total", "counter", "Edit operations that succeeded, by operation.")
            for operation, n in sorted(self._edits.items()):
                lines.append(f'recall_edits_total{{operation="{operation}"}} {n}')
            family("recall_answers_total", "counter", "Answers generated.")
            lines.append(f"recall_answers_total {self._answers}")
            family("recall_answers_with_edit_total", "counter", "Answers that an edit shaped.")
            lines.append(f"recall_answers_with_edit_total {self._answers_with_edit}")
            family("recall_admitted_share", "gauge", "Share of answers that an edit shaped.")
            share = self._answers_with_edit / self._answers if self._answers else 0.0
            lines.append(f"recall_admitted_share {share:.6f}")
        family("recall_active_edits", "gauge", "Active edits in the memory, all namespaces.")
        lines.append(f"recall_active_edits {active_edits}")
        return "\n".join(lines) + "\n"
