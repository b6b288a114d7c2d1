"""The shop's own metrics glue: cache set/delete counters, the METRICS.md renderer.

The protected /metrics view and the setup checks are the reusable package
``jewelry_monitoring_django`` (app/jewelry-monitoring-django), used like any user would.
"""
