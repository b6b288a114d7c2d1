"""Jewelry shop Django project (instrumented with django-prometheus)."""

from jewelry_shop.celery import app as celery_app

__all__ = ["celery_app"]
