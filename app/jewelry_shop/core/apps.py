from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "jewelry_shop.core"
    label = "core"
    default_auto_field = "django.db.models.BigAutoField"
