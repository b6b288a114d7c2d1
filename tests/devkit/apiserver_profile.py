"""Where kube-apiserver's CPU goes during a bench phase: its Go CPU profiles, per phase.

The bench found that 1,000 CRs given to a just-started operator cost the API server 73 %
more CPU than the same 1,000 given to a warm one, for 18 % more requests (CONTRIBUTING.md,
"Where the time goes"). Request counts cannot say why; a CPU profile of the API server can.

kube-apiserver serves ``/debug/pprof/profile`` (``--profiling`` is on by default) to a
client allowed the non-resource URL ``/debug/*``: the devkit's admin client certificate
(system:masters) is. A phase's length is not known in advance, so a thread takes one short
profile after another (``SEGMENT_SECONDS`` each) until the phase ends; the last segment runs
past the end by less than its length. ``go tool pprof -proto`` merges the segments, and
``go tool pprof -traces`` gives every sampled stack, from which ``summarize`` derives the
top functions and the buckets.

Profiling never fails the bench: a segment that cannot be fetched ends that phase's
profile with the reason, which the summary prints instead of figures.
"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Short enough that the last segment adds little after the phase, long enough that the
# API server's cost of writing a profile (~0.1 CPU-s) stays a small share of it.
SEGMENT_SECONDS = 5

# What a reader compares across phases: a sample counts in every bucket whose pattern
# matches a function anywhere in its stack (as pprof's -focus does), so the buckets
# overlap and need not add up to 100 %. Chosen from kube-apiserver's profiles of the bench;
# each pattern leaves out the frames of its package that wrap whole requests (the CRD
# handler, the cacher's delegator of writes to etcd, http2's runHandler, the audit and
# authentication filters), which would make the bucket every request's CPU.
BUCKETS: tuple[tuple[str, str], ...] = (
    ("JSON encode/decode", r"encoding/json|sigs\.k8s\.io/json|serializer/json|json-iterator"),
    ("protobuf encode/decode", r"gogo/protobuf|google\.golang\.org/protobuf|serializer/protobuf"),
    ("unstructured (CRs)", r"apimachinery/pkg/apis/meta/v1/unstructured"),
    ("deep copy", r"DeepCopy"),
    ("watch cache (cacher)", r"storage/cacher\.(?!\(\*CacheDelegator\))"),
    ("  of which event dispatch", r"cacher\.\(\*Cacher\)\.(dispatchEvent|processEvent)"),
    ("  of which cacheWatchers", r"cacher\.\(\*cacheWatcher\)"),
    ("  of which lists from cache", r"cacher\.\(\*Cacher\)\.GetList|cacher\.\(\*watchCache\)"),
    ("watch serving (WatchServer)", r"handlers\.\(\*WatchServer\)|serveWatch"),
    ("etcd client / gRPC", r"go\.etcd\.io/etcd/client|google\.golang\.org/grpc"),
    ("server-side apply", r"structured-merge-diff|fieldmanager"),
    (
        "CR validation",
        r"apiextensions-apiserver/pkg/apiserver/(validation|schema)|kube-openapi/pkg/validation"
        r"|k8s\.io/apiserver/pkg/cel|google/cel-go",
    ),
    ("ClusterIP allocation (ipallocator)", r"registry/core/service/ipallocator"),
    ("watch-cache consistency check", r"cacher\.\(\*consistencyChecker\)"),
    ("lists from etcd", r"etcd3\.\(\*store\)\.GetList"),
    ("admission", r"k8s\.io/apiserver/pkg/admission|plugin/pkg/admission"),
    ("authn/authz", r"apiserver/pkg/authentication/|apiserver/pkg/authorization/|rbac"),
    ("audit logging", r"k8s\.io/apiserver/pkg/audit\.|plugin/pkg/audit"),
    ("GC background (gcBgMarkWorker)", r"runtime\.(gcBgMarkWorker|bgsweep|bgscavenge)"),
    ("GC assist", r"runtime\.gcAssistAlloc"),
    ("allocation (mallocgc)", r"runtime\.mallocgc"),
    ("TLS", r"crypto/tls"),
    ("HTTP/2 framing", r"http2\.(?!\(\*serverConn\)\.runHandler)|http2Framer|hpack"),
    ("syscalls", r"syscall\.|internal/runtime/syscall"),
)

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "mins": 60.0,
    "hrs": 3600.0,
    "days": 86400.0,
}
_DURATION = re.compile(r"^([0-9.]+)([a-zµ]*)$")


def duration_seconds(text: str) -> float:
    """A pprof CPU value ("10ms", "1.23s", "2.50mins", "0") in seconds."""
    match = _DURATION.match(text.strip())
    if not match or (match.group(2) and match.group(2) not in _UNITS):
        raise ValueError(f"not a pprof duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass
class Trace:
    """One sampled stack of ``go tool pprof -traces``: its CPU seconds, leaf first."""

    seconds: float
    functions: list[str]


def parse_traces(text: str) -> list[Trace]:
    """The stacks of ``go tool pprof -traces`` output.

    Each sample follows a separator line (``-----------+----...``): label lines first
    (``%10s:  value``), then the stack, one function a line in the column after 13, the
    first one with the sample's value in the first 10 columns."""
    traces: list[Trace] = []
    current: Trace | None = None
    for line in text.splitlines():
        if line.startswith("-----------+"):
            current = None
            continue
        if len(line) < 14 or line[10:13] != "   ":
            continue  # the header, a label line, or blank
        value, function = line[:10].strip(), line[13:].strip()
        if value:
            current = Trace(duration_seconds(value), [function])
            traces.append(current)
        elif current is not None:
            current.functions.append(function)
    return traces


@dataclass
class ProfileSummary:
    """What one phase's merged profile says: total CPU, the functions with the largest
    cumulative share, and each bucket's cumulative share."""

    total_seconds: float
    top_cumulative: list[tuple[str, float]]  # (function, CPU-s in stacks that hold it)
    top_flat: list[tuple[str, float]]  # (function, CPU-s as the leaf)
    buckets: list[tuple[str, float]]  # (bucket, CPU-s in stacks it matches)


# Frames every request or goroutine passes through: their cumulative share is the whole
# server's and says nothing about the phase.
_UBIQUITOUS = re.compile(
    r"^runtime\.(goexit|main|systemstack|mcall)$|^net/http\.|^golang\.org/x/net/http2\."
    r"|^k8s\.io/apiserver/pkg/(server|server/filters|endpoints/filters|endpoints/filterlatency"
    r"|endpoints/metrics|server/mux|endpoints/handlers/finisher|endpoints/responsewriter"
    r"|util/flowcontrol|util/flowcontrol/fairqueuing/queueset|util/proxy)\."
    r"|^go\.opentelemetry\.io/|^github\.com/emicklei/go-restful|^k8s\.io/kube-aggregator/"
    r"|^k8s\.io/apimachinery/pkg/util/(runtime|wait)\."
    r"|^k8s\.io/apiextensions-apiserver/pkg/apiserver\.\(\*crdHandler\)\.ServeHTTP"
)


def summarize(
    traces: Iterable[Trace],
    buckets: tuple[tuple[str, str], ...] = BUCKETS,
    top: int = 12,
) -> ProfileSummary:
    """Totals of ``traces``: cumulative CPU-s per function (once per stack, recursion or
    not), leaf CPU-s per function, and each bucket's CPU-s (a stack matching it anywhere).
    The top cumulative list leaves out the frames every request passes through
    (``_UBIQUITOUS``), which would fill it with the handler chain."""
    cumulative: defaultdict[str, float] = defaultdict(float)
    flat: defaultdict[str, float] = defaultdict(float)
    per_bucket: defaultdict[str, float] = defaultdict(float)
    patterns = [(name, re.compile(pattern)) for name, pattern in buckets]
    total = 0.0
    for trace in traces:
        total += trace.seconds
        if trace.functions:
            flat[trace.functions[0]] += trace.seconds
        for function in set(trace.functions):
            cumulative[function] += trace.seconds
        for name, pattern in patterns:
            if any(pattern.search(function) for function in trace.functions):
                per_bucket[name] += trace.seconds
    telling = [(f, s) for f, s in _largest(cumulative) if not _UBIQUITOUS.search(f)]
    return ProfileSummary(
        total_seconds=total,
        top_cumulative=telling[:top],
        top_flat=_largest(flat)[:8],
        buckets=[(name, per_bucket[name]) for name, _ in buckets],
    )


def _largest(seconds: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(seconds.items(), key=lambda item: (-item[1], item[0]))


def summary_lines(phase: str, summary: ProfileSummary, wall: float) -> list[str]:
    """One phase: its total and its top functions (the buckets go in ``bucket_table``)."""

    def share(seconds: float) -> str:
        if not summary.total_seconds:
            return "0"
        return f"{seconds:.1f}s {seconds / summary.total_seconds:.0%}"

    return [
        f"{phase}: {summary.total_seconds:.1f} CPU-s profiled over {wall:.0f} s "
        f"({summary.total_seconds / wall if wall else 0:.2f} cores)",
        "  top cumulative: "
        + "; ".join(f"{_short(f)} {share(s)}" for f, s in summary.top_cumulative),
        "  top flat: " + "; ".join(f"{_short(f)} {share(s)}" for f, s in summary.top_flat),
    ]


def bucket_table(phases: list[tuple[str, ProfileSummary]]) -> list[str]:
    """The buckets' CPU-s (and share of the phase) side by side, one column a phase: the
    comparison the profiles are taken for."""
    if not phases:
        return []
    width = max(14, *(len(name) + 2 for name, _ in phases))
    rows = [f"  {'CPU-s (share)':<36}" + "".join(f"{name:>{width}}" for name, _ in phases)]
    rows.append(
        f"  {'total profiled':<36}"
        + "".join(f"{summary.total_seconds:>{width}.1f}" for _, summary in phases)
    )
    for index, (bucket, _) in enumerate(phases[0][1].buckets):
        cells = []
        for _, summary in phases:
            seconds = summary.buckets[index][1]
            share = seconds / summary.total_seconds if summary.total_seconds else 0.0
            cells.append(f"{f'{seconds:.1f} ({share:.0%})':>{width}}")
        rows.append(f"  {bucket:<36}" + "".join(cells))
    return rows


def _short(function: str) -> str:
    """A Go function name without its module path: k8s.io/apiserver/pkg/storage/cacher.(*Cacher).x
    -> cacher.(*Cacher).x."""
    return function.rsplit("/", 1)[-1]


def _go() -> str | None:
    return shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )


@dataclass
class PhaseProfile:
    """Profiles of one phase, taken one after another by a thread until ``stop``."""

    phase: str
    url: str
    context: ssl.SSLContext | None
    directory: Path
    segments: list[Path] = field(default_factory=list)
    failure: str | None = None
    wall: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> PhaseProfile:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        slug = re.sub(r"[^a-z0-9]+", "-", self.phase.lower()).strip("-")
        try:
            while not self._stop.is_set():
                url = f"{self.url}/debug/pprof/profile?seconds={SEGMENT_SECONDS}"
                with urllib.request.urlopen(
                    url, context=self.context, timeout=SEGMENT_SECONDS + 30
                ) as reply:
                    data = reply.read()
                path = self.directory / f"{slug}-{len(self.segments):03d}.pb.gz"
                path.write_bytes(data)
                self.segments.append(path)
        except (OSError, ValueError) as error:  # urllib's errors are OSErrors
            self.failure = f"{type(error).__name__}: {error}"
        finally:
            self.wall = time.monotonic() - started

    def stop(self) -> None:
        """End the phase: the segment under way finishes (within SEGMENT_SECONDS)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(SEGMENT_SECONDS + 40)

    def summary(self) -> ProfileSummary | str:
        """The summary of the merged segments, or why there is none."""
        if not self.segments:
            return f"{self.phase}: no profile ({self.failure or 'no segment finished'})"
        go = _go()
        if go is None:
            return f"{self.phase}: {len(self.segments)} profiles, but no `go` to read them"
        merged = self.merged()
        try:
            with merged.open("wb") as out:
                subprocess.run(
                    [go, "tool", "pprof", "-proto", *map(str, self.segments)],
                    stdout=out,
                    stderr=subprocess.PIPE,
                    check=True,
                    timeout=300,
                )
            traces = subprocess.run(
                [go, "tool", "pprof", "-traces", str(merged)],
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            ).stdout
        except (OSError, subprocess.SubprocessError) as error:
            return f"{self.phase}: merging or reading the profiles failed: {error}"
        return summarize(parse_traces(traces))

    def merged(self) -> Path:
        return self.directory / f"{self.segments[0].name.rsplit('-', 1)[0]}-merged.pb.gz"


class ApiserverProfiles:
    """The phases' profiles of one bench run, written under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.phases: list[PhaseProfile] = []

    def start(self, phase: str, server: str, client: Callable[[], ssl.SSLContext]) -> PhaseProfile:
        """Profile ``server`` (over TLS from ``client()``) until the returned profile's
        ``stop``."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            context = client()
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            profile = PhaseProfile(phase, server, None, self.directory)
            profile.failure = f"no client for {server}: {error}"
            self.phases.append(profile)
            return profile
        profile = PhaseProfile(phase, server, context, self.directory)
        self.phases.append(profile)
        return profile.start()

    def stop_all(self) -> None:
        for profile in self.phases:
            profile.stop()

    def lines(self) -> list[str]:
        """Each phase's total and top functions, then the buckets of all side by side."""
        lines: list[str] = []
        summarized: list[tuple[str, ProfileSummary]] = []
        for profile in self.phases:
            summary = profile.summary()
            if isinstance(summary, str):
                lines.append(summary)
                continue
            lines += summary_lines(profile.phase, summary, profile.wall)
            if profile.failure:
                lines.append(f"  (profiling ended early: {profile.failure})")
            lines.append(f"  merged profile: {profile.merged()}")
            summarized.append((profile.phase, summary))
        if summarized:
            lines += ["buckets (a sample counts in each bucket its stack touches):"]
            lines += bucket_table(summarized)
        return lines
