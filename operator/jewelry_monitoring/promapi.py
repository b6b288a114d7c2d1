"""Reads from a Prometheus HTTP API: active targets, rule groups, instant queries. Reads only.

Every request has a timeout and a size bound, and nothing here loops: the caller decides
when to ask again (the work queue's deadline for TargetsHealthy, once for doctor).
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

    def _get(self, path: str, params: dict[str, str]) -> Any:
        address = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
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

    def active_targets(self, scrape_pool: str) -> list[Obj]:
        """Active targets of one scrape pool (older versions ignore the filter and return
        every target: callers filter by ``scrapePool`` again)."""
        data = self._get("/api/v1/targets", {"state": "active", "scrapePool": scrape_pool})
        return list((data or {}).get("activeTargets") or [])

    def rule_groups(self) -> list[Obj]:
        data = self._get("/api/v1/rules", {})
        return list((data or {}).get("groups") or [])

    def query(self, expr: str) -> list[Obj]:
        """The samples of an instant vector query (``metric`` labels and ``value``)."""
        data = self._get("/api/v1/query", {"query": expr})
        return list((data or {}).get("result") or [])
