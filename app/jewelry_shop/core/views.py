from __future__ import annotations

import os

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from jewelry_monitoring_django.middleware import uncounted


# The kubelet's probes are not app traffic: uncounted keeps them out of the request metrics,
# whose rates the alerts' traffic floor and the SLOs' denominators read.
@uncounted
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests. No dependencies checked (a DB outage must
    not make Kubernetes restart every pod)."""
    return JsonResponse({"status": "ok", "pid": os.getpid()})


@uncounted
@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: every configured database answers ``SELECT 1``."""
    failures = {}
    for alias in connections:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError as exc:
            failures[alias] = type(exc).__name__
            connections[alias].close()
    if failures:
        return JsonResponse({"status": "unavailable", "databases": failures}, status=503)
    return JsonResponse({"status": "ready"})


class DeliberateError(RuntimeError):
    """Raised by the error endpoint; shows up as django_http_exceptions_total_by_type."""


@never_cache
def deliberate_error(request: HttpRequest) -> JsonResponse:
    """Always 500 -- only when ENABLE_ERROR_ENDPOINT is on (tests fire error alerts with it).
    Otherwise it does not exist (404)."""
    if not getattr(settings, "ENABLE_ERROR_ENDPOINT", False):
        raise Http404()
    raise DeliberateError("deliberate error for monitoring tests")
