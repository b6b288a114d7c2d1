from __future__ import annotations

from django.db import models

from jewelry_shop.catalog.models import Product
from jewelry_shop.core.models import monitored


class Stock(monitored("stock"), models.Model):
    product = models.OneToOneField(Product, on_delete=models.CASCADE, related_name="stock")
    quantity = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.product.sku}: {self.quantity}"

    def as_dict(self) -> dict[str, object]:
        return {"product": self.product_id, "quantity": self.quantity}
