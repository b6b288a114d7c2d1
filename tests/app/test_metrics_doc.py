"""app/METRICS.md is the measured list of exported metrics (names, types, labels).

Regenerate after an instrumentation change with
``UPDATE_METRICS_DOC=1 .venv/bin/pytest tests/app/test_metrics_doc.py``.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import pytest

from devkit.shopapp import APP_DIR, ShopServer, scrape
from jewelry_shop.loadgen import run
from jewelry_shop.monitoring.metrics_doc import render

pytestmark = pytest.mark.services

DOC = APP_DIR / "METRICS.md"


def test_metrics_md_matches_a_real_scrape(shop: ShopServer) -> None:
    stats = run(shop.url, requests=120, duration=60, seed=1)
    assert stats.failures == 0
    assert {200, 201, 204, 404, 409, 500} <= set(stats.by_status)
    text = scrape(shop.url + "/metrics").text
    rendered = render(text)
    if os.environ.get("UPDATE_METRICS_DOC"):
        DOC.write_text(rendered)
    current = DOC.read_text() if DOC.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            rendered.splitlines(keepends=True),
            "app/METRICS.md",
            "scrape",
        )
    )
    assert not diff, "app/METRICS.md is stale (UPDATE_METRICS_DOC=1 to regenerate):\n" + diff


def test_loadgen_exercises_every_route(shop: ShopServer, django_setup: None) -> None:
    from django.urls import URLResolver, get_resolver
    from jewelry_monitoring_django.middleware import UNCOUNTED

    stats = run(shop.url, requests=80, duration=60, seed=2)
    s = scrape(shop.url + "/metrics")
    seen = {
        lbl["view"]
        for lbl, _ in s.samples("django_http_requests_total_by_view_transport_method_total")
    }

    def views(patterns: list[Any]) -> dict[str, Any]:
        """URL name -> view, those of included URLconfs too (/metrics: the integration's)."""
        found: dict[str, Any] = {}
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                found.update(views(pattern.url_patterns))
            elif pattern.name:
                found[pattern.name] = pattern.callback
        return found

    # Every view but those that are not app traffic (/metrics, scraped here; the probes, which
    # the load generator requests too): those stay uncounted.
    named = views(get_resolver().url_patterns)
    names = set(named)
    uncounted = {name for name, view in named.items() if getattr(view, UNCOUNTED, False)}
    assert uncounted == {"prometheus-django-metrics", "healthz", "readyz"}
    assert names - uncounted <= seen, names - uncounted - seen
    assert not uncounted & seen, uncounted & seen
    assert stats.requests == 80
