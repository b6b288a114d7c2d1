"""Celery application (broker: Redis from CELERY_BROKER_URL / REDIS_URL).

Run a worker: ``celery -A jewelry_shop worker -l info`` (from app/). Task events are on
(``worker_send_task_events`` + ``task_send_sent_event``) so celery-exporter can watch.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jewelry_shop.settings")

app = Celery("jewelry_shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
