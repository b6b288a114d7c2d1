from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "jewelry_shop.core"
    label = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jewelry_shop.core import checks  # noqa: F401
