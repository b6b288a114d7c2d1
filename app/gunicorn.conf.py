"""gunicorn configuration for the jewelry shop (``gunicorn -c gunicorn.conf.py``).

Prometheus multiprocess mode: every worker writes its metric values to mmap files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (served by any worker) merges them, so a
scrape sees the counts of *all* workers, including ones that have since exited.

* the directory is created and emptied when the master starts (``on_starting``) -- stale
  files from a previous run would otherwise be merged into the new counts;
* ``child_exit`` calls ``multiprocess.mark_process_dead(pid)`` so live gauges of dead
  workers disappear (counters/histograms of dead workers are kept, as they must be).

Environment: PORT (8000), BIND (overrides PORT), WEB_CONCURRENCY (2 workers),
GUNICORN_THREADS (1), GUNICORN_TIMEOUT (30), PROMETHEUS_MULTIPROC_DIR
(default /tmp/prometheus-multiproc). Set PROMETHEUS_ENABLED=false to run without it.
"""

import os
import shutil
from pathlib import Path

if os.environ.get("PROMETHEUS_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off"):
    # Must be in the environment before prometheus_client is first imported (it picks the
    # multiprocess value class at import time), i.e. before any worker loads Django.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/prometheus-multiproc")

wsgi_app = "jewelry_shop.wsgi:application"
bind = [os.environ.get("BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10 if max_requests else 0
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# /tmp may be a slow disk in some images; the heartbeat file belongs in memory.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def _multiproc_dir():
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def on_starting(server):
    path = _multiproc_dir()
    if not path:
        return
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    server.log.info("prometheus multiprocess dir %s cleaned", directory)


def child_exit(server, worker):
    if _multiproc_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
