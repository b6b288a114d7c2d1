"""Protected Prometheus ``/metrics`` and setup checks for a Django app using django-prometheus.

``pip install jewelry-monitoring-django``; add
``"jewelry_monitoring_django.apps.DjangoPrometheusConfig"`` (django-prometheus's app without its
start-time database query) and ``"jewelry_monitoring_django"`` to ``INSTALLED_APPS`` and
``path("", include("jewelry_monitoring_django.urls"))`` to the URLconf. Access rules:
:mod:`.access`; cache backends counting writes too: :mod:`.cache`; ``manage.py check``
diagnoses the rest of the setup: :mod:`.checks`.
"""
