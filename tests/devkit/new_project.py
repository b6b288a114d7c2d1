"""A new user's Django 5 project, instrumented with jewelry-monitoring-django the way the
READMEs say, as the image and the Deployment a user makes of it: the app of the first hour
on a cluster (tests/e2e/test_user_first_hour.py).

``django-admin startproject mysite`` (``STARTPROJECT``, run by the caller so that it can be
shown), then ``instrument`` makes only the changes the READMEs ask for, taken from the
READMEs' code blocks when the project is made: the walk-through follows the READMEs as they
stand (tests/jmdev/test_new_project.py runs the result through ``manage.py check``):

* settings (the package README's settings.py block): its apps, its before-middleware first
  and after-middleware last, django-prometheus's database engine and the package's cache
  backend for startproject's SQLite and a local-memory cache, README.md's
  ``PROMETHEUS_EXPORT_MIGRATIONS``; the secret key from the environment, as any deployed
  project has it;
* urls (the package README's urls.py block): the package's ``/metrics``;
* gunicorn.conf.py (README.md's lines: the package's hooks, the control socket off) with 4
  workers;
* a Dockerfile a user would write (the package from a copy of this checkout, with its
  ``gunicorn`` extra; the shop's pins of Django, django-prometheus, prometheus-client and
  gunicorn as constraints);
* the Deployment with the package README's Kubernetes snippet (``PROMETHEUS_MULTIPROC_DIR``
  on an ``emptyDir`` of its own under a read-only root), meeting the "restricted" Pod
  Security Standard.

    STARTPROJECT                        # argv, run in the build context's directory
    instrument(root)                    # the changes, the Dockerfile: root is the context
    app_objects(image) -> list[dict]    # its Deployment (in namespace NAMESPACE)
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

from devkit.markdown import fenced_blocks
from devkit.prometheus_stack import RESTRICTED_CONTAINER, RESTRICTED_POD

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "app" / "jewelry-monitoring-django"
PROJECT = NAMESPACE = "mysite"
WORKERS = 4
PORT = 8000
MULTIPROC_DIR = "/run/prometheus-multiproc"
# The Secret holding the project's secret key (created by the user, never in the image).
SECRET, SECRET_KEY = "mysite", "secret-key"
# Django's own command, from the Python running this (the repository's virtualenv: the
# shop's Django 5.2).
STARTPROJECT = [str(Path(sys.executable).parent / "django-admin"), "startproject", PROJECT]
# The shop's pins of what the project installs: the versions the shop image runs.
PINNED = ("django", "django-prometheus", "prometheus-client", "gunicorn")

README = REPO / "README.md"
PACKAGE_README = PACKAGE / "README.md"


def _block_with(readme: Path, marker: str) -> str:
    [block] = [code for code in fenced_blocks(readme.read_text(), "python") if marker in code]
    return block


def settings_snippet() -> str:
    """The package README's settings.py block, as a fresh project's settings take it: its
    apps after startproject's, its middleware first and last around startproject's, its
    database and cache wrappers for startproject's SQLite and a local-memory cache (the
    README shows PostgreSQL and django-redis), and README.md's PROMETHEUS_EXPORT_MIGRATIONS."""
    namespace: dict[str, Any] = {"DATABASES": {"default": {}}, "CACHES": {"default": {}}}
    exec(_block_with(PACKAGE_README, "INSTALLED_APPS"), namespace)
    first, last = namespace["MIDDLEWARE"]
    engine = namespace["DATABASES"]["default"]["ENGINE"].rsplit(".", 1)[0] + ".sqlite3"
    cache = namespace["CACHES"]["default"]["BACKEND"].rsplit(".", 1)[0] + ".LocMemCache"
    [migrations] = [
        line
        for line in _block_with(README, "# settings.py").splitlines()
        if line.startswith("PROMETHEUS_EXPORT_MIGRATIONS")
    ]
    return f"""
# jewelry-monitoring (app/jewelry-monitoring-django/README.md)
INSTALLED_APPS += {json.dumps(namespace["INSTALLED_APPS"])}
MIDDLEWARE = [
    {json.dumps(first)},  # first
    *MIDDLEWARE,
    {json.dumps(last)},  # last
]
DATABASES["default"]["ENGINE"] = {json.dumps(engine)}
CACHES = {{"default": {{"BACKEND": {json.dumps(cache)}}}}}
{migrations}
"""


def urls_snippet() -> str:
    """The package README's urls.py block, after startproject's urlpatterns."""
    return "\nfrom django.urls import include  # noqa: E402\n\n" + _block_with(
        PACKAGE_README, "urlpatterns"
    )


def gunicorn_conf() -> str:
    """gunicorn.conf.py: README.md's gunicorn.conf.py lines as they stand (the package's
    hooks, the control socket off), then the project's app, port and 4 workers."""
    marker = "# gunicorn.conf.py"
    readme = marker + _block_with(README, marker).split(marker, 1)[1]
    return f'{readme}wsgi_app = "{PROJECT}.wsgi"\nbind = "0.0.0.0:{PORT}"\nworkers = {WORKERS}\n'


DOCKERFILE = f"""\
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${{BASE_IMAGE}}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \\
    DJANGO_SETTINGS_MODULE={PROJECT}.settings
COPY constraints.txt /src/
COPY jewelry-monitoring-django /src/jewelry-monitoring-django
RUN pip install --quiet -c /src/constraints.txt "/src/jewelry-monitoring-django[gunicorn]"
COPY {PROJECT} /app
WORKDIR /app
# The project's SQLite database, migrated into the image (read-only at run time).
RUN DJANGO_SECRET_KEY=build-only python manage.py migrate --noinput
USER 10001:10001
EXPOSE {PORT}
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
"""


def _constraints() -> str:
    shop = tomllib.loads((REPO / "app" / "pyproject.toml").read_text())
    pins = [
        line for line in shop["project"]["dependencies"] if line.lower().split("==")[0] in PINNED
    ]
    assert len(pins) == len(PINNED), pins
    return "".join(f"{pin}\n" for pin in pins)


def instrument(root: Path) -> None:
    """Instrument the project ``STARTPROJECT`` made in ``root`` as the READMEs say, and add
    what its image is built from: ``root`` is then the build context."""
    project = root / PROJECT
    settings = project / PROJECT / "settings.py"
    text = settings.read_text()
    text = re.sub(
        r"^SECRET_KEY = .*$", 'SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]', text, flags=re.M
    )
    text = re.sub(r"^DEBUG = True$", "DEBUG = False", text, flags=re.M)
    text = re.sub(r"^ALLOWED_HOSTS = \[\]$", 'ALLOWED_HOSTS = ["*"]', text, flags=re.M)
    settings.write_text("import os\n" + text + settings_snippet())
    urls = project / PROJECT / "urls.py"
    urls.write_text(urls.read_text() + urls_snippet())
    (project / "gunicorn.conf.py").write_text(gunicorn_conf())
    shutil.copytree(
        PACKAGE,
        root / PACKAGE.name,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"),
    )
    (root / "constraints.txt").write_text(_constraints())
    (root / "Dockerfile").write_text(DOCKERFILE)


def app_objects(image: str) -> list[dict[str, Any]]:
    """The project's Deployment (one pod, 4 gunicorn workers): the package README's
    Kubernetes snippet, the secret key from the Secret ``SECRET``."""
    labels = {"app": PROJECT}
    container = {
        "name": "web",
        "image": image,
        "command": ["gunicorn", "-c", "gunicorn.conf.py"],
        "env": [
            {
                "name": "DJANGO_SECRET_KEY",
                "valueFrom": {"secretKeyRef": {"name": SECRET, "key": SECRET_KEY}},
            },
            {"name": "PROMETHEUS_MULTIPROC_DIR", "value": MULTIPROC_DIR},
        ],
        "ports": [{"name": "http", "containerPort": PORT}],
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "prometheus-multiproc", "mountPath": MULTIPROC_DIR},
        ],
    }
    pod = {
        "securityContext": {**RESTRICTED_POD, "runAsUser": 10001, "runAsGroup": 10001},
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "prometheus-multiproc", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    }
    template = {"metadata": {"labels": labels}, "spec": pod}
    meta = {"name": PROJECT, "namespace": NAMESPACE, "labels": labels}
    spec = {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}]
