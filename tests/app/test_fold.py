"""Folding dead gunicorn workers' metric files (jewelry_monitoring_django.fold, issue 21.1).

Workers are simulated by writing their files with prometheus_client's own writer
(``MmapedDict``, what a worker's ``MmapedValue`` uses), each under its own pid in the name, so
the directory holds exactly what real workers leave behind. Scrapes go through the package's
``FoldingCollector``; prometheus_client's ``MultiProcessCollector`` is the reference where
nothing was folded.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from jewelry_monitoring_django import fold
from jewelry_monitoring_django.collector import FoldingCollector
from jewelry_monitoring_django.multiproc_files import Entry, encode, read_entries
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

BUCKETS = ("0.1", "1.0", "+Inf")
VIEWS = ("home", "cart", "checkout")


class Worker:
    """The files one worker process writes: a labelled counter, a histogram and gauges."""

    def __init__(self, directory: Path, pid: int) -> None:
        self.pid = pid
        self.directory = directory
        self.files: dict[str, MmapedDict] = {}
        self.values: dict[tuple[str, str], float] = defaultdict(float)
        self.gauge: float | None = None
        self.gauge_timestamp = 0.0

    def _file(self, prefix: str) -> MmapedDict:
        if prefix not in self.files:
            self.files[prefix] = MmapedDict(str(self.directory / f"{prefix}_{self.pid}.db"))
        return self.files[prefix]

    def _add(self, prefix: str, key: str, amount: float) -> None:
        self.values[(prefix, key)] += amount
        self._file(prefix).write_value(key, self.values[(prefix, key)], 0.0)

    def request(self, view: str, seconds: float) -> None:
        self._add("counter", counter_key(view), 1.0)
        self._add("histogram", histogram_key("_sum", view), seconds)
        bound = next(b for b in BUCKETS if float(b) >= seconds)
        self._add("histogram", histogram_key("_bucket", view, bound), 1.0)

    def set_gauges(self, value: float, timestamp: float) -> None:
        self.gauge, self.gauge_timestamp = value, timestamp
        for mode in ("max", "min", "livesum", "all"):
            self._file(f"gauge_{mode}").write_value(gauge_key(mode), value, 0.0)
        self._file("gauge_mostrecent").write_value(gauge_key("mostrecent"), value, timestamp)

    def exit(self) -> None:
        for f in self.files.values():
            f.close()


def counter_key(view: str) -> str:
    return mmap_key("requests", "requests_total", ["view"], [view], "Requests.")


def histogram_key(suffix: str, view: str, le: str | None = None) -> str:
    names, values = (["view", "le"], [view, le]) if le else (["view"], [view])
    return mmap_key("latency", f"latency{suffix}", names, values, "Latency.")


def gauge_key(mode: str) -> str:
    return mmap_key(f"g_{mode}", f"g_{mode}", [], [], f"A {mode} gauge.")


def scrape(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in FoldingCollector(directory).collect()
        for s in family.samples
    }


def reference(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    collector = MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in collector.collect()  # type: ignore[no-untyped-call]
        for s in family.samples
    }


def same_as_reference(directory: Path) -> bool:
    """The package's scrape equals prometheus_client's, float sums up to rounding (ours is
    exactly rounded, prometheus_client's adds in file order)."""
    ours, theirs = scrape(directory), reference(directory)
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        assert math.isclose(value, theirs[key], rel_tol=1e-12), (key, value, theirs[key])
    return True


def test_files_written_here_read_back_by_prometheus_client(tmp_path: Path) -> None:
    entries = [Entry(counter_key("x" * n), float(n), 0.0) for n in range(12)]  # every padding
    path = tmp_path / "counter_folded.db"
    path.write_bytes(encode(entries))
    theirs = [(k, v, t) for k, v, t, _ in MmapedDict.read_all_values_from_file(str(path))]
    assert theirs == [(e.key, e.value, e.timestamp) for e in entries]
    assert read_entries(path) == entries


def test_the_collector_reads_what_prometheus_client_reads(tmp_path: Path) -> None:
    for pid, seconds in ((11, 0.05), (12, 0.5), (13, 3.0)):
        worker = Worker(tmp_path, pid)
        for view in VIEWS:
            worker.request(view, seconds)
        worker.set_gauges(float(pid), float(pid))
        worker.exit()
    assert same_as_reference(tmp_path)


def test_a_fold_leaves_one_file_per_type_and_the_same_scrape(tmp_path: Path) -> None:
    for pid in range(100, 150):
        worker = Worker(tmp_path, pid)
        worker.request(VIEWS[pid % 3], pid / 97)
        worker.set_gauges(float(pid), float(pid))
        worker.exit()
    before = scrape(tmp_path)
    assert same_as_reference(tmp_path)
    assert fold.fold(tmp_path, range(100, 150))
    # the same to the last bit, but for the dead workers' live gauges, which go
    assert scrape(tmp_path) == {k: v for k, v in before.items() if k[0] != "g_livesum"}
    generation = tmp_path / "folded.1"
    assert sorted(p.name for p in generation.iterdir()) == [
        "counter_folded.db",
        "gauge_max_folded.db",
        "gauge_min_folded.db",
        "gauge_mostrecent_folded.db",
        "histogram_folded.db",
        "ledger.json",
    ]
    # what stays: the lock, the generation and the all-mode gauges (a series per pid)
    left = {p.name for p in tmp_path.iterdir()} - {"fold.lock", "folded.1"}
    assert left == {f"gauge_all_{pid}.db" for pid in range(100, 150)}


MUTATIONS = ("mkdir", "rename", "unlink", "rmdir", "write")


class CrashingOs:
    """``os`` for fold.py that dies like SIGKILL (no cleanup, locks released by the kernel)
    at its ``crash_at``-th change to the disk; a write dies after writing half its data."""

    def __init__(self, crash_at: int) -> None:
        self.crash_at = crash_at
        self.changes = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        real = getattr(os, name)
        if name not in MUTATIONS:
            return real

        def change(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.changes += 1
            if self.changes == self.crash_at:
                if name == "write":
                    fd, data = args
                    os.write(fd, bytes(data[: len(data) // 2]))
                os._exit(9)
            return real(*args, **kwargs)

        return change


def _fold_crashing(directory: Path, pid: int, crash_at: int) -> None:
    fold.os = CrashingOs(crash_at)  # type: ignore[assignment]
    fold.fold(directory, [pid])


def without_live(scraped: dict) -> dict:  # type: ignore[type-arg]
    return {k: v for k, v in scraped.items() if k[0] != "g_livesum"}


def test_a_master_killed_at_any_point_of_a_fold_loses_and_doubles_nothing(tmp_path: Path) -> None:
    crash_at, completed = 1, False
    while not completed:
        directory = tmp_path / f"crash-{crash_at}"
        directory.mkdir()
        workers = {pid: Worker(directory, pid) for pid in range(1, 6)}
        for pid, worker in workers.items():
            for view in VIEWS[: pid % 3 + 1]:
                worker.request(view, pid / 7)
            worker.set_gauges(float(pid), float(pid))
        for pid in (1, 2, 3, 4):
            workers[pid].exit()
        assert fold.fold(directory, [1, 2])  # a generation to replace
        expected = without_live(scrape(directory))

        child = multiprocessing.get_context("fork").Process(
            target=_fold_crashing, args=(directory, 3, crash_at)
        )
        child.start()
        child.join(60)
        assert child.exitcode in (0, 9), child.exitcode
        completed = child.exitcode == 0
        assert without_live(scrape(directory)) == expected, f"after a crash at change {crash_at}"

        # The next exit's fold finishes what the killed one left (and folds 3 if the killed
        # fold had not committed: a master that lives on retries it).
        assert fold.fold(directory, [3, 4])
        assert without_live(scrape(directory)) == expected, f"recovering from change {crash_at}"
        names = {p.name for p in directory.iterdir()}
        generations = [n for n in names if n.startswith(("folded.", "folding."))]
        assert len(generations) == 1, names
        ledger = set(json.loads((directory / generations[0] / "ledger.json").read_text()))
        folded_4 = {f"{p}_4.db" for p in ("counter", "histogram", "gauge_max", "gauge_min")}
        assert folded_4 | {"gauge_mostrecent_4.db"} <= ledger, ledger
        dead_files = {n for n in names if n.split("_")[-1].split(".")[0] in {"1", "2", "3", "4"}}
        assert dead_files == {f"gauge_all_{pid}.db" for pid in (1, 2, 3, 4)}, names
        workers[5].exit()
        crash_at += 1
    assert crash_at > 10  # the fold made that many changes, each one a crash point


def _fold_one_by_one(directory: Path, pids: list[int]) -> None:
    for pid in pids:
        assert fold.fold(directory, [pid])


def test_scrapes_during_folds_in_another_process_all_read_the_same(tmp_path: Path) -> None:
    """A master folding exits one by one while workers scrape: every scrape in between reads
    exactly the same totals (all these workers are dead, nothing changes but the files)."""
    pids = list(range(2000, 2150))
    for pid in pids:
        worker = Worker(tmp_path, pid)
        worker.request(VIEWS[pid % 3], pid / 1013)
        worker.exit()
    expected = scrape(tmp_path)
    master = multiprocessing.get_context("fork").Process(
        target=_fold_one_by_one, args=(tmp_path, pids)
    )
    master.start()
    scrapes = 0
    while master.is_alive() or scrapes == 0:
        assert scrape(tmp_path) == expected
        scrapes += 1
    master.join(60)
    assert master.exitcode == 0
    assert scrape(tmp_path) == expected
    assert scrapes > 1
    assert not list(tmp_path.glob("counter_2*.db"))


class FoldMachine(RuleBasedStateMachine):
    """Workers start, serve, exit; the master folds some of the dead; Prometheus scrapes.

    After every step: a scrape equals what was observed (counters and buckets exactly, float
    sums to the last bit as ``math.fsum`` of every worker's own total), and no counter, bucket
    or ``_sum`` of a scrape is ever below the previous scrape's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="fold-property-"))
        self.next_pid = 1000
        self.live: dict[int, Worker] = {}
        self.dead: dict[int, Worker] = {}
        self.unfolded: set[int] = set()
        self.previous: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.clock = 0.0

    def teardown(self) -> None:
        for worker in self.live.values():
            worker.exit()
        shutil.rmtree(self.directory)

    @rule()
    def start_worker(self) -> None:
        if len(self.live) < 4:
            self.live[self.next_pid] = Worker(self.directory, self.next_pid)
            self.next_pid += 1

    @precondition(lambda self: self.live)
    @rule(
        data=st.data(),
        view=st.sampled_from(VIEWS),
        seconds=st.floats(min_value=0.0001, max_value=5.0),
    )
    def serve(self, data: st.DataObject, view: str, seconds: float) -> None:
        pid = data.draw(st.sampled_from(sorted(self.live)))
        self.live[pid].request(view, seconds)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), value=st.floats(min_value=-100, max_value=100))
    def set_gauges(self, data: st.DataObject, value: float) -> None:
        pid = data.draw(st.sampled_from(sorted(self.live)))
        self.clock += 1
        self.live[pid].set_gauges(value, self.clock)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def worker_exits(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.live)))
        worker = self.live.pop(pid)
        worker.exit()
        self.dead[pid] = worker
        self.unfolded.add(pid)

    @precondition(lambda self: self.unfolded)
    @rule(data=st.data())
    def master_folds(self, data: st.DataObject) -> None:
        pids = data.draw(st.sets(st.sampled_from(sorted(self.unfolded)), min_size=1))
        assert fold.fold(self.directory, pids)
        self.unfolded -= pids

    @invariant()
    def scrape_is_exact_and_never_goes_back(self) -> None:
        now = scrape(self.directory)
        everyone = [*self.live.values(), *self.dead.values()]
        for view in VIEWS:
            requests = sum(w.values[("counter", counter_key(view))] for w in everyone)
            assert now.get(("requests_total", (("view", view),)), 0.0) == requests
            latency = math.fsum(
                w.values[("histogram", histogram_key("_sum", view))] for w in everyone
            )
            assert now.get(("latency_sum", (("view", view),)), 0.0) == latency
        for key, value in now.items():
            if key[0].endswith(("_total", "_sum", "_bucket", "_count")):
                assert value >= self.previous.get(key, 0.0), key
        self.previous = now

    @invariant()
    def gauges_follow_their_mode(self) -> None:
        now = scrape(self.directory)
        # live gauges last until their worker's files are folded (gunicorn's child_exit)
        unfolded = [self.dead[pid] for pid in self.unfolded]
        live = [w for w in [*self.live.values(), *unfolded] if w.gauge is not None]
        every = [w for w in [*self.live.values(), *self.dead.values()] if w.gauge is not None]
        if live:
            assert now[("g_livesum", ())] == math.fsum(w.gauge for w in live)  # type: ignore[misc]
        else:
            assert ("g_livesum", ()) not in now
        if every:
            values = [w.gauge for w in every]
            assert now[("g_max", ())] == max(values)  # type: ignore[type-var]
            assert now[("g_min", ())] == min(values)  # type: ignore[type-var]
            newest = max(every, key=lambda w: w.gauge_timestamp)
            assert now[("g_mostrecent", ())] == newest.gauge
            pids = {dict(labels)["pid"] for name, labels in now if name == "g_all"}
            assert pids == {str(w.pid) for w in every}


TestFoldMachine = FoldMachine.TestCase
TestFoldMachine.settings = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
