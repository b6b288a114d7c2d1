"""No database access while Django initializes its apps, with PROMETHEUS_EXPORT_MIGRATIONS.

django-prometheus's own AppConfig (``"django_prometheus"`` in INSTALLED_APPS) counts the
migrations in ``ready()``: a query in every process at start, which Django 5.2 warns about
("Accessing the database during app initialization is discouraged", a RuntimeWarning) and
which crashes a worker whose database is not up yet. The package README's settings use the
package's drop-in AppConfig instead (the gauges are computed at scrape time), and
``manage.py check`` names the upstream one (W017).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devkit.shopapp import shop_env

REPO = Path(__file__).resolve().parents[2]
README = REPO / "app" / "jewelry-monitoring-django" / "README.md"
WARNING = "Accessing the database during app initialization is discouraged"


def readme_installed_apps() -> list[str]:
    """INSTALLED_APPS as the README's settings.py snippet leaves them."""
    block = README.read_text().split("`settings.py`:", 1)[1]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {"DATABASES": {"default": {}}, "CACHES": {"default": {}}}
    exec(code, namespace)  # the snippet assigns to DATABASES/CACHES entries
    apps = namespace["INSTALLED_APPS"]
    assert isinstance(apps, list)
    return [str(app) for app in apps]


def write_settings(tmp_path: Path, installed_apps: list[str]) -> dict[str, str]:
    """A new user's settings (SQLite, PROMETHEUS_EXPORT_MIGRATIONS = True) in ``tmp_path``;
    returns the environment that runs Django with them."""
    (tmp_path / "newuser_settings.py").write_text(
        f"""\
SECRET_KEY = "a-test-key-that-is-long-enough-for-django-to-accept-it-0123456789"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", *{installed_apps!r}]
DATABASES = {{
    "default": {{
        "ENGINE": "django_prometheus.db.backends.sqlite3",
        "NAME": {str(tmp_path / "db.sqlite3")!r},
    }}
}}
CACHES = {{"default": {{"BACKEND": "jewelry_monitoring_django.cache.LocMemCache"}}}}
ROOT_URLCONF = "newuser_urls"
PROMETHEUS_EXPORT_MIGRATIONS = True
"""
    )
    (tmp_path / "newuser_urls.py").write_text(
        "from django.urls import include, path\n\n"
        'urlpatterns = [path("", include("jewelry_monitoring_django.urls"))]\n'
    )
    return shop_env(DJANGO_SETTINGS_MODULE="newuser_settings", PYTHONPATH=str(tmp_path))


def run_django(
    tmp_path: Path, installed_apps: list[str], code: str, warnings: str = "error"
) -> subprocess.CompletedProcess[str]:
    """``code`` after ``django.setup()`` in a fresh interpreter where RuntimeWarnings are
    errors (``warnings="ignore"``: ignored)."""
    return subprocess.run(
        [
            sys.executable,
            "-W",
            f"{warnings}::RuntimeWarning",
            "-c",
            f"import django\ndjango.setup()\n{code}",
        ],
        env=write_settings(tmp_path, installed_apps),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_readme_settings_start_without_a_database_query(tmp_path: Path) -> None:
    result = run_django(tmp_path, readme_installed_apps(), "print('ready')")
    assert WARNING not in result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ready"


def test_the_upstream_app_config_queries_at_start(tmp_path: Path) -> None:
    """What W017 reports: upstream's ready() is the query (not ours)."""
    result = run_django(tmp_path, ["django_prometheus", "jewelry_monitoring_django"], "")
    assert result.returncode != 0
    assert WARNING in result.stderr
    assert "django_prometheus/apps.py" in result.stderr


LIST_CHECKS = """
from django.core.checks import run_checks
for message in run_checks(tags=["prometheus"]):
    print(message.id, message.hint)
"""


def test_check_names_the_upstream_app_config(tmp_path: Path) -> None:
    # Upstream's start-time query is what W017 is about: ignore Django's warning of it here.
    listed = run_django(
        tmp_path, ["django_prometheus", "jewelry_monitoring_django"], LIST_CHECKS, "ignore"
    )
    assert listed.returncode == 0, listed.stderr
    [w017] = [line for line in listed.stdout.splitlines() if ".W017" in line]
    assert "jewelry_monitoring_django.apps.DjangoPrometheusConfig" in w017
    ours = run_django(
        tmp_path,
        ["jewelry_monitoring_django.apps.DjangoPrometheusConfig", "jewelry_monitoring_django"],
        LIST_CHECKS,
    )
    assert ours.returncode == 0, ours.stderr
    assert ".W017" not in ours.stdout
