from __future__ import annotations

from django.db import models

from jewelry_shop.core.models import monitored


class Customer(monitored("customer"), models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.email

    def as_dict(self) -> dict[str, object]:
        return {"id": self.pk, "email": self.email, "name": self.name}
