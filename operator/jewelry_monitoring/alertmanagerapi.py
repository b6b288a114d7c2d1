"""The few calls of an Alertmanager's HTTP API (v2) and its /metrics that the fire drill makes.

Every request has a timeout and a size bound; nothing here retries or loops: the fire drill
decides when to ask again.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Obj = dict[str, Any]
TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class AlertmanagerError(Exception):
    """The Alertmanager could not be asked, or refused what was sent."""


@dataclass(frozen=True)
class Sample:
    """One sample of a counter, as its /metrics shows it."""

    name: str
    labels: dict[str, str]
    value: float


class AlertmanagerAPI:
    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout

    def _request(self, path: str, body: Any = None) -> bytes:
        address = f"{self.url}{path}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            address,
            data=data,
            method="GET" if data is None else "POST",
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as reply:
                answer: bytes = reply.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            detail = error.read(2000).decode(errors="replace").strip()
            raise AlertmanagerError(f"{address}: HTTP {error.code} {detail}") from None
        except (OSError, ValueError) as error:  # refused, timed out, unresolvable, bad URL
            raise AlertmanagerError(f"{address}: {error}") from None
        if len(answer) > MAX_RESPONSE_BYTES:
            raise AlertmanagerError(f"{address}: answer larger than {MAX_RESPONSE_BYTES} bytes")
        return answer

    def _json(self, path: str) -> Any:
        try:
            return json.loads(self._request(path))
        except ValueError:
            raise AlertmanagerError(f"{self.url}{path}: not an Alertmanager API answer") from None

    def status(self) -> Obj:
        """``/api/v2/status``: version and the configuration it runs (``config.original``)."""
        answer = self._json("/api/v2/status")
        if not isinstance(answer, dict) or "config" not in answer:
            raise AlertmanagerError(f"{self.url}/api/v2/status: not an Alertmanager status")
        return answer

    def alerts(self, matchers: Iterable[str]) -> list[Obj]:
        """The alerts matching every matcher (``name="value"``), with the receivers
        Alertmanager routed each to and whether it is silenced or inhibited."""
        query = urllib.parse.urlencode([("filter", m) for m in matchers])
        answer = self._json(f"/api/v2/alerts?{query}")
        return [alert for alert in answer if isinstance(alert, dict)]

    def post_alerts(self, alerts: list[Obj]) -> None:
        self._request("/api/v2/alerts", alerts)

    def counters(self, names: Iterable[str]) -> list[Sample]:
        """The samples of the named counters (``*_total``) in its /metrics."""
        wanted = set(names)
        text = self._request("/metrics").decode(errors="replace")
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as error:
            raise AlertmanagerError(f"{self.url}/metrics: {error}") from None
        return [
            Sample(sample.name, dict(sample.labels), float(sample.value))
            for family in families
            for sample in family.samples
            if sample.name in wanted
        ]
