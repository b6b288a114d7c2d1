"""Fold the files of dead workers into one set of totals, so a scrape's cost stays bounded.

In prometheus_client's multiprocess mode every process leaves its files behind when it exits
(:mod:`.multiproc_files`), and every scrape reads all of them: with gunicorn's
``max_requests`` recycling workers, a pod piles up thousands and a scrape takes seconds.
:func:`fold`, run by the gunicorn master when a worker has exited (:mod:`.gunicorn`), adds a
dead worker's values to the **folded totals** and removes its files, so a scrape reads the
live workers' files plus one file per type.

What is folded, by type (prometheus_client's meaning of each is kept):

* counters, histograms, summaries and ``sum`` gauges: added;
* ``min``/``max`` gauges: the smaller/larger value; ``mostrecent`` gauges: the newer value;
* ``live*`` gauges: removed (``mark_process_dead``), and the worker's exemplars
  (:mod:`.exemplars`: scrapes while it lived have carried them);
* ``all`` gauges: left as they are, one file per process, since their series are labelled by
  the process's pid.

**Exact.** Sums are kept as non-overlapping partials (several entries of one key in a totals
file; Shewchuk's exact summation) and a scrape adds every contribution with ``math.fsum``, so a
scrape gives the same value to the last bit before and after a fold: a float ``_sum`` never
moves backwards, which Prometheus would read as a counter reset.

**Atomic.** The totals live in a generation directory ``folded.<n>`` with a ledger naming the
dead workers' files it includes (with their inode and change time, so a new process that gets a
recycled pid is never mistaken for them). A fold builds ``folding.<n+1>``, renames it to
``folded.<n+1>`` (the commit), then removes the folded files and generation ``n``. Killed at any
point, nothing is lost or counted twice: before the rename the old state stands; after it,
readers skip the files the ledger names, and the next fold removes them. Folds and scrapes take
``fold.lock`` (``flock``: exclusive to fold, shared to read), so a scrape never sees a half-done
fold and the kernel releases the lock of a killed process.

Only the standard library is used: the master folds without importing prometheus_client.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jewelry_monitoring_django.exemplars import PREFIX as EXEMPLARS_PREFIX
from jewelry_monitoring_django.exemplars import SUFFIX as EXEMPLARS_SUFFIX
from jewelry_monitoring_django.multiproc_files import (
    LIVE_MODES,
    Entry,
    FileName,
    encode,
    read_entries,
)

LOCK = "fold.lock"
GENERATION = "folded."
BUILDING = "folding."
LEDGER = "ledger.json"
# The "process" part of a totals file's name (``counter_folded.db``).
FOLDED = "folded"
# File prefixes whose values add up across processes.
SUMMED = frozenset({"counter", "histogram", "summary", "gauge_sum"})
# Gauges kept per process (their series carry a pid label): never folded.
PER_PROCESS = "gauge_all"

Identity = tuple[int, int, int]


def identity(stat: os.stat_result) -> Identity:
    """What tells a dead worker's file from a new one of a process that reuses its pid."""
    return (stat.st_ino, stat.st_ctime_ns, stat.st_size)


def add_exactly(partials: list[float], value: float) -> None:
    """Add ``value`` to ``partials`` (non-overlapping floats whose exact sum is the total),
    without rounding: Shewchuk's grow-expansion. Non-finite values fall back to a plain sum."""
    if not math.isfinite(value) or not all(math.isfinite(p) for p in partials):
        partials[:] = [sum(partials) + value]
        return
    kept = 0
    for partial in partials:
        big, small = (value, partial) if abs(value) >= abs(partial) else (partial, value)
        high = big + small
        low = small - (high - big)
        if low:
            partials[kept] = low
            kept += 1
        value = high
    partials[kept:] = [value]


@dataclass
class Totals:
    """The folded values of one file prefix (``counter``, ``gauge_max``, ...)."""

    prefix: str
    sums: dict[str, list[float]] = field(default_factory=dict)
    kept: dict[str, Entry] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        if self.prefix in SUMMED:
            add_exactly(self.sums.setdefault(entry.key, []), entry.value)
            return
        current = self.kept.get(entry.key)
        if current is None or _replaces(self.prefix, entry, current):
            self.kept[entry.key] = entry

    def entries(self) -> list[Entry]:
        summed = [
            Entry(key, partial, 0.0) for key, partials in self.sums.items() for partial in partials
        ]
        return summed + list(self.kept.values())


def _replaces(prefix: str, new: Entry, current: Entry) -> bool:
    if prefix == "gauge_min":
        return new.value < current.value
    if prefix == "gauge_max":
        return new.value > current.value
    return new.timestamp > current.timestamp  # gauge_mostrecent


# --- the directory's state -----------------------------------------------------------------


@contextlib.contextmanager
def locked(directory: Path, *, exclusive: bool, timeout: float = 5.0) -> Iterator[bool]:
    """Hold ``fold.lock`` (exclusive: a fold; shared: a scrape); yields False if it could not
    be had within ``timeout`` seconds."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.005)
        yield True
    finally:
        os.close(fd)  # releases the lock


def generation(directory: Path) -> tuple[int, Path | None]:
    """The newest committed generation of totals: (number, directory), (0, None) if none."""
    newest, path = 0, None
    for entry in os.scandir(directory):
        number = _number(entry.name, GENERATION)
        if number is not None and number > newest:
            newest, path = number, Path(entry.path)
    return newest, path


def _number(name: str, prefix: str) -> int | None:
    suffix = name[len(prefix) :] if name.startswith(prefix) else ""
    return int(suffix) if suffix.isdigit() else None


def read_ledger(generation_dir: Path | None) -> dict[str, Identity]:
    if generation_dir is None:
        return {}
    raw = json.loads((generation_dir / LEDGER).read_text())
    return {name: (ino, ctime, size) for name, (ino, ctime, size) in raw.items()}


def _already_folded(directory: Path, ledger: dict[str, Identity]) -> Iterator[Path]:
    """The files a committed fold includes but has not removed yet (it was killed)."""
    for name, folded in ledger.items():
        path = directory / name
        try:
            if identity(path.stat()) == folded:
                yield path
        except FileNotFoundError:
            continue


@dataclass(frozen=True)
class Snapshot:
    """What a scrape reads: the processes' files not folded yet, and the folded totals."""

    process_files: list[Path]
    folded_files: list[Path]


def snapshot(directory: Path) -> Snapshot:
    """The files to merge now (call it holding the lock, shared)."""
    _, generation_dir = generation(directory)
    skipped = set(_already_folded(directory, read_ledger(generation_dir)))
    process_files = sorted(
        Path(entry.path)
        for entry in os.scandir(directory)
        if FileName.parse(entry.name) is not None and Path(entry.path) not in skipped
    )
    folded = sorted(generation_dir.glob("*.db")) if generation_dir else []
    return Snapshot(process_files, folded)


# --- folding -----------------------------------------------------------------------------


def fold(directory: Path | str, pids: Iterable[int], *, lock_timeout: float = 5.0) -> bool:
    """Fold the files of the exited processes ``pids`` into the totals. False (nothing done)
    if the lock could not be had in time: the files stay and are read as they are, so a later
    fold can take them."""
    directory = Path(directory)
    with locked(directory, exclusive=True, timeout=lock_timeout) as acquired:
        if acquired:
            _fold_locked(directory, {str(pid) for pid in pids})
        return acquired


def _fold_locked(directory: Path, processes: set[str]) -> None:
    number, current = generation(directory)
    # What a fold killed halfway left behind.
    for entry in os.scandir(directory):
        older = _number(entry.name, GENERATION)
        if _number(entry.name, BUILDING) is not None or (older is not None and older < number):
            _remove_tree(Path(entry.path))
    for path in _already_folded(directory, read_ledger(current)):
        os.unlink(path)

    victims: list[tuple[Path, FileName]] = []
    dead_live_gauges: list[Path] = []  # and exemplars: both die with their process
    exemplar_files = {f"{EXEMPLARS_PREFIX}{process}{EXEMPLARS_SUFFIX}" for process in processes}
    for entry in os.scandir(directory):
        if entry.name in exemplar_files:
            dead_live_gauges.append(Path(entry.path))
            continue
        name = FileName.parse(entry.name)
        if name is None or name.process not in processes or name.prefix == PER_PROCESS:
            continue
        if name.mode in LIVE_MODES:
            dead_live_gauges.append(Path(entry.path))
        else:
            victims.append((Path(entry.path), name))
    if victims:
        _commit(directory, number + 1, current, victims)
        for path, _ in victims:
            os.unlink(path)
        if current is not None:
            _remove_tree(current)
    for path in dead_live_gauges:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _commit(
    directory: Path, number: int, current: Path | None, victims: list[tuple[Path, FileName]]
) -> None:
    """Write generation ``number``: the current totals plus the victims', and its ledger."""
    totals: dict[str, Totals] = {}
    for path in sorted(current.glob("*.db")) if current else []:
        name = FileName.parse(path.name)
        assert name is not None, path
        for entry in read_entries(path):
            totals.setdefault(name.prefix, Totals(name.prefix)).add(entry)
    ledger = {}
    for path, name in victims:
        ledger[path.name] = identity(path.stat())
        for entry in read_entries(path):
            totals.setdefault(name.prefix, Totals(name.prefix)).add(entry)
    building = directory / f"{BUILDING}{number}"
    os.mkdir(building)
    for prefix, folded in sorted(totals.items()):
        _write(building / f"{prefix}_{FOLDED}.db", encode(folded.entries()))
    _write(building / LEDGER, json.dumps(ledger).encode())
    os.rename(building, directory / f"{GENERATION}{number}")  # the commit


def _write(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data``. Not fsynced: a killed process's writes are in the
    page cache, which every reader sees, and after a reboot gunicorn's start empties the
    directory anyway (:func:`.gunicorn.on_starting`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    """Remove a generation directory (files only)."""
    for entry in os.scandir(path):
        os.unlink(entry.path)
    os.rmdir(path)
