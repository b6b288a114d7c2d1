from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "jewelry_shop.catalog"
    label = "catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jewelry_shop.catalog import signals  # noqa: F401  (cache invalidation)
