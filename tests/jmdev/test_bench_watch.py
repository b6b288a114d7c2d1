"""The benchmark's watch of the CRs outlives the API server's ordinary watch errors.

Issue 9: at 100 CRs the watch thread died on a 504 ("Too large resource version") and the run
ended with a TimeoutError although the operator had made every CR Ready. Here the list and
watch are fakes that fail in each of those ways before the CRs turn up Ready.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes.client.rest import ApiException

from devkit.bench import ReadyClock


def _cr(name: str, resource_version: str, ready: bool) -> dict[str, Any]:
    status = "True" if ready else "False"
    return {
        "metadata": {"name": name, "resourceVersion": resource_version},
        "status": {"conditions": [{"type": "Ready", "status": status}]},
    }


class FakeApi:
    """Hands out a scripted sequence of watch outcomes; lists return the current CRs."""

    def __init__(self, watches: list[Any], items: list[dict[str, Any]]) -> None:
        self.watches = watches
        self.items = items
        self.watched_from: list[str] = []

    def list_crs(self) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": "100"}, "items": list(self.items)}

    def watch_crs(self, resource_version: str) -> Iterator[dict[str, Any]]:
        self.watched_from.append(resource_version)
        step = self.watches.pop(0) if self.watches else []
        if callable(step):
            step = step()
        if isinstance(step, BaseException):
            raise step
        yield from step


def test_the_clock_relists_and_rewatches_through_410_504_and_dropped_connections() -> None:
    too_new = ApiException(status=504, reason="Timeout: Too large resource version: 4723")
    api = FakeApi(
        watches=[
            [{"type": "ADDED", "object": _cr("a", "101", ready=False)}],
            too_new,
            ApiException(status=410, reason="Expired: too old resource version"),
            urllib3.exceptions.ProtocolError("Connection broken"),
            ApiException(status=500, reason="Internal error"),
            # Ready only in a watch event after all that:
            [{"type": "MODIFIED", "object": _cr("a", "105", ready=True)}],
        ],
        items=[],
    )
    clock = ReadyClock(api.list_crs, api.watch_crs, backoff=0.01)
    try:
        clock.wait(["a"], timeout=30)
    finally:
        clock.stop()
    # One list at the start, one after the 504 and one after the 410; the other errors
    # resume the watch from the last version seen.
    assert clock.lists == 3
    assert api.watched_from[:6] == ["100", "101", "100", "100", "100", "100"]


def test_a_cr_made_ready_while_the_watch_was_down_is_found_by_the_relist() -> None:
    def operator_makes_b_ready_then_the_watch_fails() -> ApiException:
        api.items.append(_cr("b", "102", ready=True))
        return ApiException(status=504, reason="Too large resource version")

    api = FakeApi(watches=[operator_makes_b_ready_then_the_watch_fails], items=[])
    clock = ReadyClock(api.list_crs, api.watch_crs, backoff=0.01)
    try:
        clock.wait(["b"], timeout=30)
    finally:
        clock.stop()
    assert clock.lists == 2


def test_a_watch_that_keeps_failing_stops_with_its_error_not_a_timeout() -> None:
    api = FakeApi(watches=[ApiException(status=503, reason="Unavailable")] * 50, items=[])
    clock = ReadyClock(api.list_crs, api.watch_crs, max_failures=4, backoff=0.01)
    with pytest.raises(RuntimeError, match=r"(?s)gave up after 4 failures in a row.*Unavailable"):
        clock.wait(["c"], timeout=60)
    assert len(api.watched_from) == 4


def test_a_timeout_says_what_the_api_server_reports_of_the_missing_crs() -> None:
    api = FakeApi(watches=[], items=[_cr("slow", "101", ready=False)])
    clock = ReadyClock(api.list_crs, api.watch_crs, backoff=0.01)
    try:
        with pytest.raises(TimeoutError, match=r"slow: Ready=False \(None\) on the API server"):
            clock.wait(["slow"], timeout=0.5)
    finally:
        clock.stop()
