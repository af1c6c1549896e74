"""Small statistics helpers for the benchmark report."""

from __future__ import annotations

import math
from typing import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of the values, ``None`` when empty."""
    data = sorted(values)
    if not data:
        return None
    rank = (len(data) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def summary(values: Iterable[float]) -> dict[str, float | int | None]:
    """p50, p95, mean, min, max and count."""
    data = [v for v in values if v is not None]
    return {
        "n": len(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "mean": sum(data) / len(data) if data else None,
        "min": min(data) if data else None,
        "max": max(data) if data else None,
    }
