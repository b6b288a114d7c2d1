"""What holds the operator's memory at its peak: tracemalloc, sampled from inside the process.

The bench measured a peak RSS of 234 MiB while a restarted operator confirmed 1,100
up-to-date CRs, against 165 MiB warm, without knowing what held it. ``jm-dev bench
--heap-profile`` starts the operator with this module's ``start_sampling`` called by the
launcher (devkit.operator_process) once the operator's modules are imported: no hook in the
operator's own code. Tracing starts after the imports because tracemalloc makes importing
kopf and pydantic ~15x slower (18 s where 0.85 s is usual), past the bench's start timeout;
the imports' memory (``RSS at import``, ~60 MiB) is then in RSS but not in the traced total.

A thread reads tracemalloc's traced total every ``POLL_SECONDS`` (cheap) and, once it is
``GROWTH`` over the largest snapshot's, takes a snapshot and dumps it to a file beside the
report (~1 s each per 2 million blocks). Grouping the blocks inside the operator would take
~10 s per 2 million, every allocation of the grouping being traced too; the bench groups
the dump in its own process instead (``load_report``). The report (JSON) says when the
largest snapshot was taken and RSS then; it is written at each new largest, so it survives
a process that is killed, and at exit, with the process's final high-water mark.

The sampling half runs inside the operator's process, which has no ``kubernetes`` package
and must not get one: the standard library only.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.5
GROWTH = 1.1  # a new snapshot once the traced total is 10 % above the largest one's
MIN_SNAPSHOT_BYTES = 4 * 1024 * 1024
MIB = 1024 * 1024

Frame = tuple[str, int]  # (filename, line), innermost first in a traceback
Block = tuple[int, int, Sequence[Frame]]  # (bytes, count, traceback) of a group of blocks


def short_path(filename: str) -> str:
    """A source file as a reader finds it: from the package on (``kopf/_core/x.py``),
    the standard library's from ``lib/python3.N/`` on (``json/decoder.py``)."""
    for marker in ("site-packages/", "/operator/", "/tests/"):
        if marker in filename:
            return filename.rsplit(marker, 1)[1]
    parts = filename.split("/")
    for index, part in enumerate(parts):
        if part.startswith("python3") and index + 1 < len(parts) and parts[index - 1] == "lib":
            return "/".join(parts[index + 1 :])
    return filename


def site_of(frames: Sequence[Frame]) -> str:
    """The innermost frame, file:line: where the memory was allocated."""
    if not frames:
        return "<no frame>"
    filename, line = frames[0]
    return f"{short_path(filename)}:{line}"


def module_of(frames: Sequence[Frame]) -> str:
    """The file of the innermost frame."""
    return short_path(frames[0][0]) if frames else "<no frame>"


def operator_frame_of(frames: Sequence[Frame]) -> str:
    """The innermost frame in the operator's package (else in kopf): which of its lines
    made the allocation happen, however deep in json or aiohttp the block was allocated.
    A traceback deeper than tracemalloc keeps may hold neither."""
    for package in ("jewelry_monitoring/", "kopf/"):
        for filename, line in frames:
            if package in filename:
                return f"{short_path(filename)}:{line}"
    return "<neither the operator's nor kopf's frame within the kept frames>"


def grouped(
    blocks: Iterable[Block], key: Callable[[Sequence[Frame]], str], top: int
) -> list[tuple[str, int, int]]:
    """(key, bytes, blocks) of the ``top`` largest groups of ``blocks`` by ``key``."""
    sizes: defaultdict[str, int] = defaultdict(int)
    counts: defaultdict[str, int] = defaultdict(int)
    for size, count, frames in blocks:
        name = key(frames)
        sizes[name] += size
        counts[name] += count
    ordered = sorted(sizes, key=lambda name: (-sizes[name], name))
    return [(name, sizes[name], counts[name]) for name in ordered[:top]]


def reduction(blocks: list[Block], top: int = 40) -> dict[str, Any]:
    """What the report keeps of a snapshot: its total and its largest groups three ways."""

    def rows(key: Callable[[Sequence[Frame]], str]) -> list[dict[str, Any]]:
        return [
            {"where": name, "mib": size / MIB, "blocks": count}
            for name, size, count in grouped(blocks, key, top)
        ]

    return {
        "snapshot_mib": sum(size for size, _, _ in blocks) / MIB,
        "sites": rows(site_of),
        "modules": rows(module_of),
        "operator_frames": rows(operator_frame_of),
    }


def status_mib(field: str, pid: int | str = "self") -> float | None:
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM) in MiB; None if it has none."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return None


def _status_mib(field: str) -> float:
    return status_mib(field) or 0.0


class HeapSampler:
    """Keeps a dump of the largest tracemalloc snapshot of this process."""

    def __init__(self, report: Path) -> None:
        self.report = report
        self.dump = snapshot_path(report)
        self.started = time.monotonic()
        self.rss_at_start = _status_mib("VmRSS")
        self.largest: dict[str, Any] | None = None
        # tracemalloc's own peak would count the snapshots' copies: the peak is reset after
        # each snapshot and the largest one seen outside them kept here.
        self.traced_peak = 0
        self._lock = threading.Lock()

    def _snapshot(self, traced: int) -> None:
        rss = _status_mib("VmRSS")
        began = time.monotonic()
        snapshot = tracemalloc.take_snapshot()
        partial = self.dump.with_suffix(".partial")
        snapshot.dump(str(partial))
        del snapshot
        partial.replace(self.dump)
        tracemalloc.reset_peak()
        self.largest = {
            "seconds_after_start": began - self.started,
            "traced_mib": traced / MIB,
            "rss_mib_before_snapshot": rss,
            "tracemalloc_own_mib": tracemalloc.get_tracemalloc_memory() / MIB,
            "snapshot_seconds": time.monotonic() - began,
        }
        self.write()

    def write(self) -> None:
        """When the largest snapshot was taken, and the process's totals now, to the report."""
        with self._lock:
            current, _ = tracemalloc.get_traced_memory()
            report = {
                "pid": os.getpid(),
                "seconds_after_start": time.monotonic() - self.started,
                "rss_mib_when_tracing_started": self.rss_at_start,
                "traced_mib_now": current / MIB,
                "traced_peak_mib": self.traced_peak / MIB,
                "rss_mib_now": _status_mib("VmRSS"),
                "rss_high_water_mib": _status_mib("VmHWM"),
                "largest": self.largest,
            }
            partial = self.report.with_suffix(".partial")
            partial.write_text(json.dumps(report, indent=1))
            partial.replace(self.report)

    def run(self) -> None:
        largest = MIN_SNAPSHOT_BYTES / GROWTH
        while True:
            time.sleep(POLL_SECONDS)
            traced, peak = tracemalloc.get_traced_memory()
            self.traced_peak = max(self.traced_peak, peak)
            if traced > largest * GROWTH:
                largest = traced
                self._snapshot(traced)


def snapshot_path(report: Path) -> Path:
    return report.with_suffix(".snapshot")


def start_sampling(report: str, frames: int) -> HeapSampler:
    """Trace this process's allocations (``frames`` deep) from now on, and keep the largest
    snapshot beside ``report``."""
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    sampler = HeapSampler(Path(report))
    threading.Thread(target=sampler.run, name="heap-sampler", daemon=True).start()
    atexit.register(sampler.write)
    return sampler


def load_report(report: Path) -> dict[str, Any]:
    """A report with its largest snapshot grouped (``reduction``) into ``largest``; in the
    bench's process, which does not trace."""
    loaded: dict[str, Any] = json.loads(report.read_text())
    if loaded.get("largest") and snapshot_path(report).exists():
        snapshot = tracemalloc.Snapshot.load(str(snapshot_path(report)))
        # A Traceback lists its frames oldest first; the groupings want the innermost first.
        blocks: list[Block] = [
            (stat.size, stat.count, [(f.filename, f.lineno) for f in reversed(stat.traceback)])
            for stat in snapshot.statistics("traceback")
        ]
        loaded["largest"].update(reduction(blocks))
    return loaded


def report_lines(label: str, report: dict[str, Any], top: int = 15) -> list[str]:
    """A report as the bench prints it: the totals at the largest snapshot (RSS against
    what tracemalloc traced, tracemalloc's own tables, and the rest: the allocator's free
    but unreturned memory, C extensions, the interpreter), then its largest sites."""
    largest = report.get("largest")
    end = (
        f"traced peak {report['traced_peak_mib']:.1f} MiB, "
        f"RSS high-water {report['rss_high_water_mib']:.1f} MiB (both with tracemalloc on)"
    )
    if not largest:
        return [f"heap, {label}: no snapshot; {end}"]
    rss, traced, own, at_start = (
        largest["rss_mib_before_snapshot"],
        largest["traced_mib"],
        largest["tracemalloc_own_mib"],
        report["rss_mib_when_tracing_started"],
    )
    rest = rss - at_start - traced - own
    lines = [
        f"heap, {label}: largest snapshot {largest['seconds_after_start']:.0f} s after start "
        f"(taken in {largest['snapshot_seconds']:.1f} s): RSS {rss:.1f} MiB = "
        f"{at_start:.1f} when tracing started (the imports) + traced {traced:.1f} + "
        f"tracemalloc's own {own:.1f} + rest {rest:.1f} (allocator, C, interpreter); {end}",
        f"  top {top} allocation sites (MiB, blocks):",
    ]
    lines += [
        f"    {row['mib']:7.1f} {row['blocks']:>9,}  {row['where']}"
        for row in largest.get("sites", [])[:top]
    ]
    for title, key in (("by module", "modules"), ("by operator/kopf frame", "operator_frames")):
        if key not in largest:
            lines.append(f"  {title}: no snapshot dump")
            continue
        rows = "; ".join(f"{row['where']} {row['mib']:.1f}" for row in largest[key][:8])
        lines.append(f"  {title} (MiB): {rows}")
    return lines
