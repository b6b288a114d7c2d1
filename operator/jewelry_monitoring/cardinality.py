"""Which metric families of a scrape job hold its series: the cardinality guard's pointer to
what grows (doctor, and the TargetNearSampleLimit runbook). Pure functions."""

from __future__ import annotations

from collections import Counter
from typing import Any

Obj = dict[str, Any]
# A histogram's or summary's samples belong to one family, as in the exposition format.
_PARTS = ("_bucket", "_count", "_sum", "_created")


def families_query(matchers: str) -> str:
    """The series of one job per sample name (``matchers`` without braces)."""
    return f"count by (__name__) ({{{matchers}}})"


def families(rows: list[Obj]) -> list[tuple[str, int]]:
    """The answer of ``families_query`` as (family, series), biggest first: a histogram's
    ``_bucket``, ``_count``, ``_sum`` (and ``_created``) count as one family."""
    counts = {str(row["metric"].get("__name__", "")): int(float(row["value"][1])) for row in rows}
    grouped: Counter[str] = Counter()
    for name, series in counts.items():
        base = next((name.removesuffix(part) for part in _PARTS if name.endswith(part)), name)
        histogram = f"{base}_bucket" in counts or f"{base}_count" in counts
        grouped[base if histogram else name] += series
    return sorted(grouped.items(), key=lambda item: (-item[1], item[0]))


def summary(found: list[tuple[str, int]], top: int = 3) -> str:
    """``1,234 series in 45 families; biggest: a (612), b (80), c (40)``."""
    total = sum(series for _, series in found)
    biggest = ", ".join(f"{name} ({series:,})" for name, series in found[:top])
    return f"{total:,} series in {len(found)} families; biggest: {biggest}"
