"""django-prometheus's after-middleware, counting the app's traffic and nothing else.

Three corrections to upstream, same metrics and names:

* **A bounded ``method`` label everywhere.** Upstream sanitises the HTTP method (unknown verbs
  become ``<invalid method>``) for most metrics but passes ``request.method`` verbatim to
  ``django_http_requests_latency_seconds_by_view_method``: any client could create unbounded
  series (17 buckets each) by sending made-up verbs. So at most 10 methods.
* **A bounded ``view`` label.** A process labels at most ``PROMETHEUS_MAX_VIEWS`` (default
  :data:`DEFAULT_MAX_VIEWS`) distinct views; requests of any further view are counted under
  ``view="<other view>"`` and a warning is logged once (``manage.py check`` reports it too:
  W016). View names come from the URLconf, but a URLconf chosen per request
  (``request.urlconf``: per tenant, per host) or generated at run time has no bound.
* **Scrapes are not app traffic.** Upstream counts every request, so each Prometheus scrape
  of ``/metrics`` adds a 200 to ``django_http_responses_total_by_status_total`` and a request
  to ``django_http_requests_total_by_method_total``: the SLO denominators and the alerts'
  request-rate floor (``minRequestRate``) grow with the scrape interval and the number of
  Prometheus replicas, on an app nobody uses. A view marked :func:`uncounted` (the package's
  ``/metrics`` view is) is left out of every metric of this middleware. Upstream counts a
  request on arrival, before the URL is resolved, so that count is taken when the response
  leaves instead, once the view is known. django-prometheus's before-middleware
  (``django_http_requests_before_middlewares_total`` and the latency including middlewares)
  still counts every request that reaches the process, as its names say.

Probes are the views the app marks uncounted too, which only the app knows: the kubelet's probe
configuration is in the pod spec, out of Django's sight. But each probe request says what it
is: the kubelet sends ``User-Agent: kube-probe/<major>.<minor>`` unless the probe sets its own.
A probe that reaches a counted view is logged once per view, with the fix.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_prometheus.middleware import PrometheusAfterMiddleware as _Upstream
from django_prometheus.utils import Time

from jewelry_monitoring_django import exemplars

View = TypeVar("View", bound=Callable[..., Any])

# The attribute :func:`uncounted` sets; ``functools.wraps`` copies it onto decorated views.
UNCOUNTED = "prometheus_uncounted"
# The kubelet's User-Agent on HTTP probes (k8s.io/kubernetes pkg/probe/http), unless overridden.
PROBE_USER_AGENT = "kube-probe/"
MAX_VIEWS = "PROMETHEUS_MAX_VIEWS"
DEFAULT_MAX_VIEWS = 300
OTHER_VIEW = "<other view>"

logger = logging.getLogger(__name__)


class ViewLabels:
    """The ``view`` label values this process has used, at most ``PROMETHEUS_MAX_VIEWS``."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.overflowed = False

    def bounded(self, view: str) -> str:
        if view in self._seen:
            return view
        limit = int(getattr(settings, MAX_VIEWS, DEFAULT_MAX_VIEWS))
        with self._lock:
            if len(self._seen) < limit:
                self._seen.add(view)
                return view
            if not self.overflowed:
                self.overflowed = True
                logger.warning(
                    "%d distinct views have been labelled (%s): requests of view %r and of "
                    "any other new view are counted under view=%r",
                    limit,
                    MAX_VIEWS,
                    view,
                    OTHER_VIEW,
                )
        return OTHER_VIEW


view_labels = ViewLabels()


class CountedProbes:
    """The counted views this process has seen the kubelet probe, each logged once."""

    def __init__(self) -> None:
        self._views: set[str] = set()
        self._lock = threading.Lock()

    def note(self, request: HttpRequest, view: str) -> None:
        # META, not request.headers: that builds a dict of every header on first use.
        agent = request.META.get("HTTP_USER_AGENT", "")
        if not agent.startswith(PROBE_USER_AGENT) or view in self._views:
            return
        with self._lock:
            if view in self._views:
                return
            self._views.add(view)
        logger.warning(
            "%s (view %r) answers the kubelet's probes (User-Agent %r) and is counted as app "
            "traffic: mark the view with jewelry_monitoring_django.middleware.uncounted",
            request.path,
            view,
            agent,
        )


counted_probes = CountedProbes()


def uncounted(view: View) -> View:
    """Leave the requests served by ``view`` out of the request metrics (monitoring endpoints:
    ``/metrics``; probes if they must not count as traffic)."""
    setattr(view, UNCOUNTED, True)
    return view


def is_uncounted(request: HttpRequest) -> bool:
    """Whether the view the request was routed to is marked :func:`uncounted`."""
    match = getattr(request, "resolver_match", None)
    return match is not None and getattr(match.func, UNCOUNTED, False)


class PrometheusAfterMiddleware(_Upstream):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The child of each metric per label values: prometheus_client's ``labels()`` checks
        # and converts its arguments and takes a lock on every call; about ten calls per
        # request. As many entries as the metrics have series (the labels are bounded).
        self._children: dict[tuple[Any, ...], Any] = {}

    def label_metric(self, metric: Any, request: Any, response: Any = None, **labels: Any) -> Any:
        if "method" in labels:
            labels["method"] = self._method(request)
        if "view" in labels:
            labels["view"] = view_labels.bounded(labels["view"])
        key = (metric, *labels.items())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = super().label_metric(metric, request, response, **labels)
        if metric is self.metrics.requests_latency_by_view_method:
            trace = exemplars.current_trace()
            if trace is not None:
                return exemplars.Traced(child, metric._name, labels, trace)
        return child

    def process_request(self, request: HttpRequest) -> None:
        # Only the clock starts on arrival; _count_arrival counts once the view is known.
        request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]

    def _count_arrival(self, request: HttpRequest) -> None:
        """Upstream's arrival counters (method, transport, AJAX, body size), as its
        ``process_request`` counts them, without restarting the clock, and read from
        ``request.META``: ``request.headers`` builds a dict of every header on first use, which
        nothing else on a request's path needs."""
        metrics = self.metrics
        method = self._method(request)
        self.label_metric(metrics.requests_by_method, request, method=method).inc()
        transport = self._transport(request)
        self.label_metric(metrics.requests_by_transport, request, transport=transport).inc()
        if request.META.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
            self.label_metric(metrics.requests_ajax, request).inc()
        body_bytes = int(request.META.get("CONTENT_LENGTH") or 0)
        self.label_metric(metrics.requests_body_bytes, request).observe(body_bytes)

    def process_view(self, request: HttpRequest, view_func: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(view_func, UNCOUNTED, False):
            return None
        return super().process_view(request, view_func, *args, **kwargs)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if is_uncounted(request):
            return response
        counted_probes.note(request, self._get_view_name(request))
        self._count_arrival(request)
        return super().process_response(request, response)  # type: ignore[no-any-return]

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if not is_uncounted(request):
            super().process_exception(request, exception)
