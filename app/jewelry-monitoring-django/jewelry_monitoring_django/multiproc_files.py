"""The files of prometheus_client's multiprocess mode, read and written by this package.

Each process writes one file per metric type in ``PROMETHEUS_MULTIPROC_DIR``:
``counter_<pid>.db``, ``histogram_<pid>.db``, ``summary_<pid>.db`` and
``gauge_<mode>_<pid>.db`` (mode: the gauge's ``multiprocess_mode``). A file is

* a little-endian int32: the number of bytes in use, then 4 bytes of padding;
* entries, each: an int32 key length, the UTF-8 key (JSON
  ``[family, sample name, {labels}, help]``), spaces up to the next multiple of 8 (at least
  one byte: prometheus_client always pads), then two float64s: value and timestamp (the
  timestamp only means something for ``mostrecent`` gauges).

A histogram file holds each bucket's own count (not cumulative) and ``_sum``; ``_count`` is
derived at scrape time. This module only needs the standard library: the gunicorn master
folds files with it without importing prometheus_client.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct("<i4x")
_LENGTH = struct.Struct("<i")
_VALUES = struct.Struct("<dd")

# gauge modes whose values die with their process (prometheus_client's ``live*``)
LIVE_MODES = frozenset({"liveall", "livesum", "livemax", "livemin", "livemostrecent"})
GAUGE_MODES = frozenset({"all", "sum", "max", "min", "mostrecent"}) | LIVE_MODES
KINDS = ("counter", "histogram", "summary", "gauge")


@dataclass(frozen=True)
class Entry:
    key: str
    value: float
    timestamp: float


@dataclass(frozen=True)
class FileName:
    """What a file's name says: ``counter_123.db`` -> kind counter, process ``123``."""

    kind: str
    mode: str  # a gauge's multiprocess mode, "" for other kinds
    process: str

    @classmethod
    def parse(cls, name: str) -> FileName | None:
        """The parts of a multiprocess file name; None for any other file."""
        if not name.endswith(".db"):
            return None
        parts = name[:-3].split("_")
        if parts[0] == "gauge" and len(parts) == 3 and parts[1] in GAUGE_MODES:
            return cls("gauge", parts[1], parts[2])
        if parts[0] in KINDS and parts[0] != "gauge" and len(parts) == 2:
            return cls(parts[0], "", parts[1])
        return None

    @property
    def prefix(self) -> str:
        """The file name without the process: ``counter``, ``gauge_max``."""
        return f"{self.kind}_{self.mode}" if self.mode else self.kind

    def name(self) -> str:
        return f"{self.prefix}_{self.process}.db"


def read_entries(path: Path | str) -> list[Entry]:
    """Every entry of a file, in file order (a key may repeat in this package's own files)."""
    with open(path, "rb") as f:
        # prometheus_client preallocates 64 KiB: read only the bytes in use.
        data = f.read(4096)
        if len(data) < _HEADER.size:
            return []
        (used,) = _HEADER.unpack_from(data, 0)
        if used > len(data):
            data += f.read(used - len(data))
    used = min(used, len(data))
    entries = []
    pos = _HEADER.size
    while pos + _LENGTH.size <= used:
        (length,) = _LENGTH.unpack_from(data, pos)
        start = pos + _LENGTH.size
        end = start + length + _padding(length)
        if length < 0 or end + _VALUES.size > used:
            raise ValueError(f"{path}: entry at byte {pos} runs past the used size {used}")
        value, timestamp = _VALUES.unpack_from(data, end)
        entries.append(Entry(data[start : start + length].decode("utf-8"), value, timestamp))
        pos = end + _VALUES.size
    return entries


def _padding(length: int) -> int:
    """Spaces after a key of ``length`` bytes so the values start 8-aligned (1 to 8)."""
    return 8 - (length + _LENGTH.size) % 8


def encode(entries: list[Entry]) -> bytes:
    """A whole file holding ``entries``, readable by prometheus_client."""
    chunks = []
    for entry in entries:
        key = entry.key.encode("utf-8")
        chunks.append(_LENGTH.pack(len(key)) + key + b" " * _padding(len(key)))
        chunks.append(_VALUES.pack(entry.value, entry.timestamp))
    body = b"".join(chunks)
    return _HEADER.pack(_HEADER.size + len(body)) + body
