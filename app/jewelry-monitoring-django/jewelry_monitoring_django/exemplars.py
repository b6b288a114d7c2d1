"""Exemplars: the OpenTelemetry trace of a request, linked from its latency bucket.

When the app traces its requests with OpenTelemetry, the after-middleware observes
``django_http_requests_latency_seconds_by_view_method`` with the request's trace as an
exemplar (``trace_id``, ``span_id``), so a dashboard can jump from a slow bucket to a trace.
Tracing is active when the app has imported ``opentelemetry.trace`` (its instrumentation did)
and the current span is sampled; this module never imports OpenTelemetry itself, so without it
nothing changes and nothing more is imported.

prometheus_client keeps exemplars in single-process mode only. In multiprocess mode each
process keeps the newest exemplar of each bucket in ``exemplars_<pid>.bin`` beside
prometheus_client's files (:class:`ExemplarFile`: fixed 512-byte slots in an mmap, each with a
CRC32, so a scrape never reads a half-written one); the scrape merges the newest of each bucket
over the live processes, and a fold removes a dead worker's file. Exemplars are exposed in the
OpenMetrics format only, which the ``/metrics`` view then serves to a scraper that asks for it
(Prometheus does when its exemplar storage is on).
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

PREFIX = "exemplars_"
SUFFIX = ".bin"
SLOT = 512
_KEY_BYTES = 428
# key length, key, trace id (hex), span id (hex), value, timestamp, then the CRC32 of all that
_SLOT = struct.Struct(f"<H{_KEY_BYTES}s32s16sdd")
_CRC = struct.Struct("<I")
_INITIAL_SLOTS = 64
assert _SLOT.size + _CRC.size <= SLOT


def current_trace() -> dict[str, str] | None:
    """The sampled OpenTelemetry span of this request as exemplar labels, if any."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


def tracing() -> bool:
    """Whether this process traces with OpenTelemetry (and so may hold exemplars)."""
    return "opentelemetry.trace" in sys.modules


def bucket_key(family: str, labels: dict[str, str]) -> str:
    return json.dumps([family, sorted(labels.items())])


class ExemplarFile:
    """This process's newest exemplar of each bucket, in ``exemplars_<pid>.bin``."""

    def __init__(self, directory: Path) -> None:
        self.pid = os.getpid()
        self.path = directory / f"{PREFIX}{self.pid}{SUFFIX}"
        self._file = open(self.path, "a+b")  # noqa: SIM115 (kept open: it backs the mmap)
        self._slots: dict[str, int] = {}
        self._grow(_INITIAL_SLOTS)

    def _grow(self, slots: int) -> None:
        self._file.truncate(slots * SLOT)
        self._map = mmap.mmap(self._file.fileno(), slots * SLOT)
        self._capacity = slots

    def record(self, key: str, trace: dict[str, str], value: float, timestamp: float) -> None:
        encoded = key.encode()
        if len(encoded) > _KEY_BYTES:
            return  # labels too long to keep an exemplar for
        slot = self._slots.get(key)
        if slot is None:
            slot = len(self._slots)
            if slot == self._capacity:
                self._grow(self._capacity * 2)
            self._slots[key] = slot
        body = _SLOT.pack(
            len(encoded),
            encoded,
            trace["trace_id"].encode(),
            trace["span_id"].encode(),
            value,
            timestamp,
        )
        offset = slot * SLOT
        self._map[offset : offset + _SLOT.size + _CRC.size] = body + _CRC.pack(zlib.crc32(body))


def read_file(path: Path) -> list[tuple[str, dict[str, str], float, float]]:
    """The intact exemplars of one file: (bucket key, labels, value, timestamp)."""
    data = path.read_bytes()
    found = []
    for offset in range(0, len(data) - SLOT + 1, SLOT):
        body = data[offset : offset + _SLOT.size]
        (crc,) = _CRC.unpack_from(data, offset + _SLOT.size)
        length, key, trace_id, span_id, value, timestamp = _SLOT.unpack(body)
        if length == 0 or crc != zlib.crc32(body):
            continue  # never written, or being written right now
        labels = {"trace_id": trace_id.decode(), "span_id": span_id.decode()}
        found.append((key[:length].decode(), labels, value, timestamp))
    return found


class _Store:
    """The ExemplarFile of the current process (a new one after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file: ExemplarFile | None = None

    def record(self, directory: Path, key: str, trace: dict[str, str], value: float) -> None:
        with self._lock:
            if self._file is None or self._file.pid != os.getpid():
                self._file = ExemplarFile(directory)
            self._file.record(key, trace, value, time.time())


store = _Store()


class Traced:
    """A labelled latency histogram whose ``observe`` adds the request's trace."""

    def __init__(
        self, child: Any, family: str, labels: dict[str, str], trace: dict[str, str]
    ) -> None:
        self._child, self._family, self._labels, self._trace = child, family, labels, trace

    def observe(self, amount: float) -> None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            self._child.observe(amount, exemplar=self._trace)
            return
        self._child.observe(amount)
        from prometheus_client.utils import floatToGoString

        bound = next(b for b in self._child._upper_bounds if amount <= b)
        labels = {**self._labels, "le": floatToGoString(bound)}  # type: ignore[no-untyped-call]
        store.record(Path(directory), bucket_key(self._family, labels), self._trace, amount)
