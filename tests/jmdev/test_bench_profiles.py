"""The bench's two profiles read what they are given right.

kube-apiserver's CPU profile (devkit.apiserver_profile) is summarized from ``go tool pprof
-traces`` text: the totals, buckets and top functions here come from a hand-written trace
text in that format. The operator's heap (devkit.heap_sampler) is grouped from tracemalloc
tracebacks: the groupings are checked on made-up blocks, and the sampler once in a real
process started as the bench starts the operator (tracing from the launcher, report on exit,
snapshot grouped by the bench).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devkit.apiserver_profile import (
    Trace,
    bucket_table,
    duration_seconds,
    parse_traces,
    summarize,
    summary_lines,
)
from devkit.heap_sampler import (
    grouped,
    load_report,
    module_of,
    operator_frame_of,
    reduction,
    report_lines,
    short_path,
    site_of,
)

TRACES = """File: kube-apiserver
Build ID: 0123
Type: cpu
Time: 2026-12-07 21:06:57 UTC
Duration: 10s, Total samples = 1.60s (16.00%)
-----------+-------------------------------------------------------
      1.2s   encoding/json.(*decodeState).object
             k8s.io/apimachinery/pkg/runtime/serializer/json.(*Serializer).Decode
             k8s.io/apiserver/pkg/endpoints/handlers.createHandler.func1
             net/http.HandlerFunc.ServeHTTP
             runtime.goexit
-----------+-------------------------------------------------------
  priority:  workload-low
     300ms   runtime.mallocgc
             k8s.io/apiserver/pkg/storage/cacher.(*Cacher).dispatchEvent
             k8s.io/apiserver/pkg/storage/cacher.(*Cacher).dispatchEvents
             runtime.goexit
-----------+-------------------------------------------------------
     100ms   runtime.gcBgMarkWorker
             runtime.goexit
"""


def test_durations_in_pprofs_units() -> None:
    assert duration_seconds("10ms") == pytest.approx(0.01)
    assert duration_seconds("1.23s") == pytest.approx(1.23)
    assert duration_seconds("2.5mins") == pytest.approx(150)
    assert duration_seconds("250us") == pytest.approx(0.00025)
    assert duration_seconds("0") == 0
    with pytest.raises(ValueError):
        duration_seconds("12 parsecs")


def test_traces_are_read_with_their_stacks_leaf_first_and_labels_skipped() -> None:
    traces = parse_traces(TRACES)
    assert [t.seconds for t in traces] == pytest.approx([1.2, 0.3, 0.1])
    assert traces[1].functions == [
        "runtime.mallocgc",
        "k8s.io/apiserver/pkg/storage/cacher.(*Cacher).dispatchEvent",
        "k8s.io/apiserver/pkg/storage/cacher.(*Cacher).dispatchEvents",
        "runtime.goexit",
    ]


def test_buckets_count_a_stack_wherever_it_matches() -> None:
    summary = summarize(parse_traces(TRACES))
    buckets = dict(summary.buckets)
    assert summary.total_seconds == pytest.approx(1.6)
    assert buckets["JSON encode/decode"] == pytest.approx(1.2)
    assert buckets["watch cache (cacher)"] == pytest.approx(0.3)
    assert buckets["  of which event dispatch"] == pytest.approx(0.3)
    assert buckets["allocation (mallocgc)"] == pytest.approx(0.3)
    assert buckets["GC background (gcBgMarkWorker)"] == pytest.approx(0.1)
    assert buckets["etcd client / gRPC"] == 0


def test_top_functions_count_recursion_once_and_leave_out_the_handler_chain() -> None:
    recursive = [Trace(1.0, ["a.f", "a.f", "a.g", "runtime.goexit"]), Trace(0.5, ["a.g"])]
    summary = summarize(recursive)
    assert summary.top_cumulative == [("a.g", 1.5), ("a.f", 1.0)]
    assert summary.top_flat == [("a.f", 1.0), ("a.g", 0.5)]
    names = [f for f, _ in summarize(parse_traces(TRACES)).top_cumulative]
    assert "net/http.HandlerFunc.ServeHTTP" not in names and "runtime.goexit" not in names


def test_summary_lines_give_seconds_and_shares() -> None:
    lines = summary_lines("warm", summarize(parse_traces(TRACES)), wall=10)
    assert lines[0] == "warm: 1.6 CPU-s profiled over 10 s (0.16 cores)"
    assert "json.(*decodeState).object 1.2s 75%" in lines[1]


def test_the_bucket_table_puts_phases_side_by_side() -> None:
    one = summarize(parse_traces(TRACES))
    other = summarize([Trace(2.0, ["runtime.gcBgMarkWorker"])])
    table = bucket_table([("warm", one), ("just started", other)])
    assert table[0].split()[-3:] == ["warm", "just", "started"]
    assert table[1].split()[-2:] == ["1.6", "2.0"]
    json_row = next(row for row in table if "JSON" in row)
    assert json_row.split()[-4:] == ["1.2", "(75%)", "0.0", "(0%)"]
    gc_row = next(row for row in table if "gcBgMarkWorker" in row)
    assert gc_row.split()[-4:] == ["0.1", "(6%)", "2.0", "(100%)"]
    assert bucket_table([]) == []


SITE = "/v/lib/python3.13/site-packages"
BLOCKS = [
    (
        3000,
        30,
        [
            ("/usr/lib/python3.13/json/decoder.py", 353),
            (f"{SITE}/aiohttp/client.py", 10),
            ("/w/operator/jewelry_monitoring/kube.py", 88),
            (f"{SITE}/kopf/_core/x.py", 5),
        ],
    ),
    (2000, 10, [("/usr/lib/python3.13/json/decoder.py", 353), (f"{SITE}/kopf/_core/x.py", 7)]),
    (500, 5, [("/usr/lib/python3.13/json/decoder.py", 400)]),
]


def test_paths_are_cut_to_where_a_reader_finds_them() -> None:
    assert short_path("/usr/lib/python3.13/json/decoder.py") == "json/decoder.py"
    assert short_path(f"{SITE}/kopf/_core/x.py") == "kopf/_core/x.py"
    assert short_path("/w/operator/jewelry_monitoring/kube.py") == "jewelry_monitoring/kube.py"
    assert short_path("<frozen abc>") == "<frozen abc>"


def test_blocks_are_grouped_by_site_module_and_operator_frame() -> None:
    assert grouped(BLOCKS, site_of, 5) == [
        ("json/decoder.py:353", 5000, 40),
        ("json/decoder.py:400", 500, 5),
    ]
    assert grouped(BLOCKS, module_of, 5) == [("json/decoder.py", 5500, 45)]
    operator = grouped(BLOCKS, operator_frame_of, 5)
    assert operator[0] == ("jewelry_monitoring/kube.py:88", 3000, 30)
    assert operator[1] == ("kopf/_core/x.py:7", 2000, 10)
    assert operator[2][0].startswith("<neither")
    assert grouped(BLOCKS, site_of, 1) == [("json/decoder.py:353", 5000, 40)]


def test_the_report_compares_rss_with_what_was_traced() -> None:
    largest = {
        "seconds_after_start": 12.0,
        "traced_mib": 100.0,
        "rss_mib_before_snapshot": 230.0,
        "tracemalloc_own_mib": 50.0,
        "snapshot_seconds": 1.5,
        **reduction(BLOCKS),
    }
    report = {
        "rss_mib_when_tracing_started": 60.0,
        "traced_peak_mib": 110.0,
        "rss_high_water_mib": 300.0,
        "largest": largest,
    }
    lines = report_lines("restart", report, top=2)
    assert (
        "RSS 230.0 MiB = 60.0 when tracing started (the imports) + traced 100.0 + "
        "tracemalloc's own 50.0 + rest 20.0" in lines[0]
    )
    assert lines[2].split() == ["0.0", "40", "json/decoder.py:353"]
    assert len([line for line in lines if line.startswith("    ")]) == 2
    empty = report_lines("x", {"traced_peak_mib": 1.0, "rss_high_water_mib": 2.0, "largest": None})
    assert empty[0].startswith("heap, x: no snapshot")


def test_the_sampler_reports_the_largest_heap_of_a_process(tmp_path: Path) -> None:
    report = tmp_path / "heap.json"
    program = (
        "import sys, time\n"
        "from devkit.heap_sampler import start_sampling\n"
        "start_sampling(sys.argv[1], 5)\n"
        "def block():\n"
        "    return bytes(1000)\n"
        "held = [block() for _ in range(20000)]\n"
        "time.sleep(1.5)\n"
        "del held\n"
        "time.sleep(1)\n"
    )
    subprocess.run([sys.executable, "-c", program, str(report)], check=True, timeout=60)
    written = load_report(report)
    largest = written["largest"]
    assert largest["traced_mib"] > 19
    assert largest["sites"][0]["where"] == "<string>:5"  # the innermost frame
    assert largest["sites"][0]["blocks"] >= 20000
    assert written["traced_mib_now"] < 5  # the last write was at exit, after `del held`
