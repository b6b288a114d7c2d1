"""Reads from a Prometheus HTTP API: targets, rule groups and instant queries. Reads only.

Every request has a timeout and a size bound, and nothing here loops: the caller decides
when to ask again (the work queue's deadline for the checks, once for doctor). Each answer
is filtered on the server where the API allows (one scrape pool, named rule groups) so that
its size follows our objects, not the whole Prometheus.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

Obj = dict[str, Any]
TIMEOUT_SECONDS = 10.0
# A Prometheus with thousands of targets answers unfiltered in megabytes; more is refused.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024


class PrometheusError(Exception):
    """Prometheus could not be asked, or answered with an error."""


class PrometheusAPI:
    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        # Requests made, for the operator's count of its load on Prometheus.
        self.requests = 0

    def _get(self, path: str, params: dict[str, str] | list[tuple[str, str]]) -> Any:
        address = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        self.requests += 1
        try:
            with urllib.request.urlopen(address, timeout=self._timeout) as reply:
                body = reply.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise PrometheusError(f"{address}: HTTP {error.code} {error.reason}") from None
        except (OSError, ValueError) as error:  # refused, timed out, unresolvable, bad URL
            raise PrometheusError(f"{address}: {error}") from None
        except http.client.HTTPException as error:  # not HTTP (an SSH port), cut short
            raise PrometheusError(f"{address}: not an HTTP answer ({error!r})") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise PrometheusError(f"{address}: answer larger than {MAX_RESPONSE_BYTES} bytes")
        try:
            payload = json.loads(body)
        except ValueError:
            raise PrometheusError(f"{address}: not a Prometheus API answer") from None
        if not isinstance(payload, dict) or payload.get("status") != "success":
            raise PrometheusError(
                f"{address}: {payload.get('error') if isinstance(payload, dict) else payload}"
            )
        return payload.get("data")

    def targets(self, scrape_pool: str) -> Obj:
        """Active and dropped targets of one scrape pool (a Prometheus that ignores the
        filter returns every target: callers filter by pool and address again)."""
        data = self._get("/api/v1/targets", {"state": "any", "scrapePool": scrape_pool})
        return {
            "activeTargets": list((data or {}).get("activeTargets") or []),
            "droppedTargets": list((data or {}).get("droppedTargets") or []),
        }

    def rule_groups(self, names: list[str] | None = None) -> list[Obj]:
        """Rule groups, only those named when ``names`` is given, without their alerts."""
        params = [("exclude_alerts", "true"), *(("rule_group[]", name) for name in names or [])]
        data = self._get("/api/v1/rules", params)
        return list((data or {}).get("groups") or [])

    def query(self, expr: str) -> list[Obj]:
        """The instant vector ``expr`` gives now."""
        data = self._get("/api/v1/query", {"query": expr})
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise PrometheusError(f"{self.url}: {expr} did not give an instant vector")
        return list(data.get("result") or [])
