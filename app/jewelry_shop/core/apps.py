from django.apps import AppConfig
from django.conf import settings


class CoreConfig(AppConfig):
    name = "jewelry_shop.core"
    label = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if settings.PROMETHEUS_ENABLED and settings.TEST_METRIC_SERIES:
            from prometheus_client import Gauge

            # Test-only (TEST_METRIC_SERIES): a family as wide as asked, one series per value.
            wide = Gauge(
                "jewelry_shop_test_series",
                "Test-only: TEST_METRIC_SERIES series, for the cardinality guard's tests",
                ["series"],
                multiprocess_mode="max",
            )
            for number in range(settings.TEST_METRIC_SERIES):
                wide.labels(series=str(number)).set(1)
