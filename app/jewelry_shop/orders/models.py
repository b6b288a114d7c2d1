from __future__ import annotations

from django.db import models

from jewelry_shop.catalog.models import Product
from jewelry_shop.core.models import monitored
from jewelry_shop.customers.models import Customer


class Order(monitored("order"), models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        CANCELLED = "cancelled"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="EUR")
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "customer": self.customer_id,
            "status": self.status,
            "total": str(self.total),
            "currency": self.currency,
            "items": [i.as_dict() for i in self.items.all()],
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "confirmed_at": self.confirmed_at.isoformat() if self.confirmed_at else None,
        }


class OrderItem(monitored("order_item"), models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)

    def as_dict(self) -> dict[str, object]:
        return {
            "product": self.product_id,
            "quantity": self.quantity,
            "unit_price": str(self.unit_price),
        }
