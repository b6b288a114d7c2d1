"""gunicorn hooks for prometheus_client's multiprocess mode. In your gunicorn config file::

    from jewelry_monitoring_django.gunicorn import child_exit, on_starting  # noqa: F401

    control_socket_disable = True  # gunicorn >= 25.1: no $HOME/.gunicorn under a read-only root

* :func:`on_starting` (master, once): creates ``PROMETHEUS_MULTIPROC_DIR`` and empties it, so
  files of a previous run (an ``emptyDir`` survives container restarts) are not merged into
  the new counts; warns when several workers run without the directory set.
* :func:`child_exit` (master, each time a worker exits: ``max_requests``, timeout, crash):
  folds the worker's files into the totals of dead workers (:mod:`.fold`), so a scrape reads
  one file per type for all of them, and removes its ``live*`` gauges
  (``mark_process_dead``). A fold that cannot take the lock within a few seconds (a scrape
  holding it) is retried at the next exit; until then the files are read as they are.

The environment variable must be set before the first import of prometheus_client, that is in
the container's environment (or at the top of the config file), never in Django's settings.
This module imports neither prometheus_client nor Django.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from jewelry_monitoring_django import fold

logger = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"

# Exited workers whose fold could not take the lock yet (the master's own memory).
_unfolded: set[int] = set()
# How long child_exit waits for scrapes holding the lock (the master does nothing else then).
LOCK_TIMEOUT = 5.0


def multiproc_dir() -> Path | None:
    value = os.environ.get(ENV) or os.environ.get(ENV.lower())
    return Path(value) if value else None


def empty_directory(directory: Path) -> None:
    """Create ``directory`` or remove everything in it."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def on_starting(server: Any) -> None:
    directory = multiproc_dir()
    if directory is None:
        if server.cfg.workers > 1:
            server.log.warning(
                "%d workers and %s is not set: each scrape sees the counters of whichever "
                "worker answers, and they jump up and down",
                server.cfg.workers,
                ENV,
            )
        return
    empty_directory(directory)
    server.log.info("prometheus multiprocess directory %s emptied", directory)


def child_exit(server: Any, worker: Any) -> None:
    directory = multiproc_dir()
    if directory is None:
        return
    _unfolded.add(worker.pid)
    try:
        if fold.fold(directory, _unfolded, lock_timeout=LOCK_TIMEOUT):
            _unfolded.clear()
        else:
            server.log.warning(
                "%s is busy: worker files of %s are folded at the next worker exit",
                directory / fold.LOCK,
                sorted(_unfolded),
            )
    except Exception:
        # The master must go on whatever happens here; the files stay and are read as
        # they are, so no sample is lost.
        server.log.exception("folding the metrics files of workers %s failed", sorted(_unfolded))
        _unfolded.clear()
