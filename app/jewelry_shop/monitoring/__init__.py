"""The shop's own metrics glue: the METRICS.md renderer.

The protected /metrics view, the setup checks and the cache set/delete counters are the
reusable package ``jewelry_monitoring_django`` (app/jewelry-monitoring-django), used like any
user would.
"""
