"""jewelry_monitoring_django.gunicorn's hooks, called as gunicorn's master calls them."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from jewelry_monitoring_django import fold
from jewelry_monitoring_django import gunicorn as hooks
from prometheus_client.mmap_dict import MmapedDict, mmap_key


def master(workers: int) -> SimpleNamespace:
    return SimpleNamespace(cfg=SimpleNamespace(workers=workers), log=logging.getLogger("master"))


def dead_worker(directory: Path, pid: int) -> SimpleNamespace:
    counter = MmapedDict(str(directory / f"counter_{pid}.db"))
    counter.write_value(mmap_key("c", "c_total", [], [], "C."), 1.0, 0.0)
    counter.close()
    return SimpleNamespace(pid=pid)


def test_on_starting_warns_of_several_workers_without_the_directory(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with caplog.at_level(logging.WARNING, logger="master"):
        hooks.on_starting(master(1))
        assert caplog.records == []
        hooks.on_starting(master(4))
    [record] = caplog.records
    assert "4 workers and PROMETHEUS_MULTIPROC_DIR is not set" in record.getMessage()


def test_on_starting_empties_the_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    directory = tmp_path / "prom"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    hooks.on_starting(master(2))  # created
    dead_worker(directory, 1)
    assert fold.fold(directory, [1])
    dead_worker(directory, 2)
    hooks.on_starting(master(2))
    assert list(directory.iterdir()) == []


def test_a_fold_blocked_by_a_scrape_is_done_at_the_next_exit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(hooks, "LOCK_TIMEOUT", 0.05)
    server = master(2)
    with fold.locked(tmp_path, exclusive=False) as scraping:  # a scrape holds the lock
        assert scraping
        with caplog.at_level(logging.WARNING, logger="master"):
            hooks.child_exit(server, dead_worker(tmp_path, 101))
    assert (tmp_path / "counter_101.db").exists()
    assert "folded at the next worker exit" in caplog.text
    hooks.child_exit(server, dead_worker(tmp_path, 102))
    assert not (tmp_path / "counter_101.db").exists()
    assert not (tmp_path / "counter_102.db").exists()
    ledger = (tmp_path / "folded.1" / "ledger.json").read_text()
    assert "counter_101.db" in ledger and "counter_102.db" in ledger
