"""``path("", include("jewelry_monitoring_django.urls"))`` serves the protected ``/metrics``.

The URL name is django-prometheus's own, so the scrape's ``view`` label is unchanged.
"""

from django.urls import path

from jewelry_monitoring_django.views import metrics_view

urlpatterns = [path("metrics", metrics_view, name="prometheus-django-metrics")]
