"""Which metric families of a scrape job hold its series: the cardinality guard's pointer to
what grows (doctor, and the TargetNearSampleLimit runbook). Pure functions."""

from __future__ import annotations

from collections import Counter
from typing import Any

Obj = dict[str, Any]
# A histogram's or summary's samples belong to one family, as in the exposition format.
_PARTS = ("_bucket", "_count", "_sum", "_created")
# Series of the job that Prometheus itself writes: the alert series, and those it records for
# each scrape (up, scrape_duration_seconds, scrape_samples_scraped, ...). Recording rules'
# outputs keep the job label too; their names have a colon, which exposed metrics never
# have by convention. None is in what the app exposes nor in its sampleLimit.
_PROMETHEUS_OWN = frozenset({"ALERTS", "ALERTS_FOR_STATE", "up"})


def exposed(name: str) -> bool:
    """Whether a sample name of the job can come from the target's own exposition."""
    return not (name in _PROMETHEUS_OWN or name.startswith("scrape_") or ":" in name)


def families_query(matchers: str) -> str:
    """The series of one job per sample name (``matchers`` without braces)."""
    return f"count by (__name__) ({{{matchers}}})"


def families(rows: list[Obj]) -> list[tuple[str, int]]:
    """The answer of ``families_query`` as (family, series), biggest first, of what the
    target exposes (``exposed``): a histogram's ``_bucket``, ``_count``, ``_sum`` (and
    ``_created``) count as one family."""
    counts = {
        name: int(float(row["value"][1]))
        for row in rows
        if exposed(name := str(row["metric"].get("__name__", "")))
    }
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
