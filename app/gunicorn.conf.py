"""gunicorn configuration for the jewelry shop (``gunicorn -c gunicorn.conf.py``).

Prometheus multiprocess mode: every worker writes its metric values to mmap files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (served by any worker) merges them, so a
scrape sees the counts of *all* workers, including ones that have since exited. The hooks come
from jewelry_monitoring_django.gunicorn: ``on_starting`` empties the directory, ``child_exit``
folds an exited worker's files into the totals of dead workers (a scrape's cost stays bounded
however often ``max_requests`` recycles workers).

Environment: PORT (8000), BIND (overrides PORT), WEB_CONCURRENCY (2 workers),
GUNICORN_THREADS (1), GUNICORN_TIMEOUT (30), GUNICORN_MAX_REQUESTS (0: never recycle),
PROMETHEUS_MULTIPROC_DIR (default /tmp/prometheus-multiproc). Set PROMETHEUS_ENABLED=false to
run without it.
"""

import os

if os.environ.get("PROMETHEUS_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off"):
    # Must be in the environment before prometheus_client is first imported (it picks the
    # multiprocess value class at import time), i.e. before any worker loads Django.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/prometheus-multiproc")

from jewelry_monitoring_django.gunicorn import child_exit, on_starting  # noqa: F401

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
# gunicorn >= 25.1's control server (for `gunicornc`) would create $HOME/.gunicorn at start,
# which the pod's read-only root filesystem refuses (the image's user has no home). Nothing
# here uses it (older gunicorn ignores the name).
control_socket_disable = True
