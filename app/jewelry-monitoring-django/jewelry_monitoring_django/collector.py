"""The scrape side of multiprocess mode: every process's files plus the folded totals.

In place of prometheus_client's ``MultiProcessCollector`` (same families, names, labels and
values), for two reasons:

* it reads the folded totals of dead workers (:mod:`.fold`) and skips the files a fold killed
  halfway has already included, under the fold lock, so a scrape never counts a sample twice;
* it adds every contribution to a sum with ``math.fsum`` (exactly rounded), so the result does
  not depend on which files were folded: a folded ``_sum`` reads the same to the last bit.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

from jewelry_monitoring_django import exemplars, fold
from jewelry_monitoring_django.multiproc_files import LIVE_MODES, FileName, read_entries

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Key:
    """One parsed mmap key."""

    family: str
    sample: str
    labels: Labels
    help: str


class _Family:
    """What one family accumulates over all files."""

    def __init__(self, name: str, help_text: str, kind: str, mode: str) -> None:
        self.name, self.help, self.kind, self.mode = name, help_text, kind, mode
        self.sums: dict[tuple[str, Labels], list[float]] = defaultdict(list)
        self.buckets: dict[Labels, dict[float, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.gauges: dict[tuple[str, Labels], tuple[float, float]] = {}

    def add(self, key: Key, value: float, timestamp: float, process: str) -> None:
        if self.kind == "histogram":
            le = dict(key.labels).get("le")
            if le is not None:
                without_le = tuple(item for item in key.labels if item[0] != "le")
                self.buckets[without_le][float(le)].append(value)
                return
        if self.kind != "gauge" or self.mode in ("sum", "livesum"):
            self.sums[(key.sample, key.labels)].append(value)
            return
        if self.mode in ("all", "liveall"):
            self.gauges[(key.sample, (*key.labels, ("pid", process)))] = (value, timestamp)
            return
        series = (key.sample, key.labels)
        current = self.gauges.get(series)
        if current is None or _better(self.mode, (value, timestamp), current):
            self.gauges[series] = (value, timestamp)

    def metric(self, exemplars: dict[tuple[str, Labels], Exemplar]) -> Metric:
        """The family's samples, those of one series together (OpenMetrics requires it):
        a histogram's buckets, then its ``_count`` and ``_sum``."""
        series: dict[Labels, list[Sample]] = defaultdict(list)
        for labels, by_bound in self.buckets.items():
            cumulative = 0.0
            for bound in sorted(by_bound):
                cumulative += math.fsum(by_bound[bound])
                bucket = (*labels, ("le", floatToGoString(bound)))  # type: ignore[no-untyped-call]
                exemplar = exemplars.get((self.name, tuple(sorted(bucket))))
                sample = Sample(f"{self.name}_bucket", dict(bucket), cumulative, None, exemplar)
                series[labels].append(sample)
            series[labels].append(Sample(f"{self.name}_count", dict(labels), cumulative))
        for (name, labels), values in self.sums.items():
            series[labels].append(Sample(name, dict(labels), math.fsum(values)))
        for (name, labels), (value, _) in self.gauges.items():
            series[labels].append(Sample(name, dict(labels), value))
        metric = Metric(self.name, self.help, self.kind)
        metric.samples = [sample for samples in series.values() for sample in samples]
        return metric


def _better(mode: str, new: tuple[float, float], current: tuple[float, float]) -> bool:
    if mode in ("min", "livemin"):
        return new[0] < current[0]
    if mode in ("max", "livemax"):
        return new[0] > current[0]
    return new[1] > current[1]  # mostrecent: the newer timestamp


class FoldingCollector:
    """Collects ``directory``'s multiprocess files and folded totals."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._keys: dict[str, Key] = {}

    def _key(self, raw: str) -> Key:
        key = self._keys.get(raw)
        if key is None:
            family, sample, labels, help_text = json.loads(raw)
            key = Key(family, sample, tuple(sorted(labels.items())), help_text)
            if len(self._keys) < 100_000:
                self._keys[raw] = key
        return key

    def exemplars(self) -> dict[tuple[str, Labels], Exemplar]:
        """The newest exemplar of each histogram bucket over the processes' exemplar files
        (:mod:`.exemplars`; looked for only in a process that traces)."""
        newest: dict[tuple[str, Labels], Exemplar] = {}
        if not exemplars.tracing():
            return newest
        for path in self.directory.glob(f"{exemplars.PREFIX}*{exemplars.SUFFIX}"):
            try:
                found = exemplars.read_file(path)
            except FileNotFoundError:  # its process exited and was folded
                continue
            for key, labels, value, timestamp in found:
                family, items = json.loads(key)
                bucket = (family, tuple((name, label) for name, label in items))
                current = newest.get(bucket)
                if current is None or timestamp > float(current.timestamp or 0):
                    newest[bucket] = Exemplar(labels, value, timestamp)
        return newest

    def collect(self) -> Iterator[Metric]:
        families: dict[str, _Family] = {}
        with fold.locked(self.directory, exclusive=False, timeout=30) as acquired:
            if not acquired:
                raise TimeoutError(f"{self.directory / fold.LOCK} stayed locked for 30 s")
            files = fold.snapshot(self.directory)
            for path in [*files.folded_files, *files.process_files]:
                name = FileName.parse(path.name)
                assert name is not None
                try:
                    entries = read_entries(path)
                except FileNotFoundError:
                    if name.mode in LIVE_MODES:  # mark_process_dead removed it meanwhile
                        continue
                    raise
                for entry in entries:
                    key = self._key(entry.key)
                    family = families.get(key.family)
                    if family is None:
                        family = families[key.family] = _Family(
                            key.family, key.help, name.kind, name.mode
                        )
                    family.add(key, entry.value, entry.timestamp, name.process)
            exemplars = self.exemplars()
        for family in families.values():
            yield family.metric(exemplars)
