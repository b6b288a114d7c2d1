"""Prometheus instrumentation glue: cache metrics, /metrics view and its access control."""
