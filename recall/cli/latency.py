"""The latency summary every benchmark reports (`recall bench`, `recall bench serve`)."""

from __future__ import annotations

import numpy as np


def latency_ms(seconds: list[float]) -> dict[str, float]:
    """n, p50, p99 and mean of `seconds`, in milliseconds (NaN for no timing)."""
    array = np.asarray(seconds or [float("nan")]) * 1000.0
    return {
        "n": len(seconds),
        "p50_ms": float(np.percentile(array, 50)),
        "p99_ms": float(np.percentile(array, 99)),
        "mean_ms": float(array.mean()),
    }
