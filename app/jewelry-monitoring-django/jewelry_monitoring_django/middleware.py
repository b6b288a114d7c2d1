"""django-prometheus's after-middleware with a bounded ``method`` label everywhere.

Upstream sanitises the HTTP method (unknown verbs become ``<invalid method>``) for most
metrics but passes ``request.method`` verbatim to
``django_http_requests_latency_seconds_by_view_method``: any client could create
unbounded series (17 buckets each) by sending made-up verbs. Same metrics, same names;
only the label value is normalised.
"""

from __future__ import annotations

from typing import Any

from django_prometheus.middleware import PrometheusAfterMiddleware as _Upstream


class PrometheusAfterMiddleware(_Upstream):
    def label_metric(self, metric: Any, request: Any, response: Any = None, **labels: Any) -> Any:
        if "method" in labels:
            labels["method"] = self._method(request)
        return super().label_metric(metric, request, response, **labels)
