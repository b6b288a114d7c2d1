from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "jewelry_shop.inventory"
    label = "inventory"
    default_auto_field = "django.db.models.BigAutoField"
