"""Jewelry shop Django project (instrumented with django-prometheus)."""

import os

# An empty PROMETHEUS_MULTIPROC_DIR means single-process metrics (manifests/dev's migrate
# and Celery worker set "" because Kubernetes cannot unset the image's value).
# prometheus_client only checks that the variable exists, and picks its value class when
# first imported, so the empty variable goes before anything of ours imports it.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from jewelry_shop.celery import app as celery_app

__all__ = ["celery_app"]
