from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

from jewelry_shop.core.models import monitored


class Material(monitored("material"), models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    purity = models.CharField(max_length=40, blank=True, help_text="e.g. 18k, 925, VS1")

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def as_dict(self) -> dict[str, object]:
        return {"id": self.pk, "name": self.name, "slug": self.slug, "purity": self.purity}


class Collection(monitored("collection"), models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "name": self.name,
            "slug": self.slug,
            "description": self.description,
        }


class Product(monitored("product"), models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    collection = models.ForeignKey(
        Collection, null=True, blank=True, on_delete=models.SET_NULL, related_name="products"
    )
    materials = models.ManyToManyField(Material, blank=True, related_name="products")
    price = models.DecimalField(
        max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.00"))]
    )
    currency = models.CharField(max_length=3, default="EUR")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    def as_dict(self) -> dict[str, object]:
        stock = getattr(self, "stock", None)
        return {
            "id": self.pk,
            "sku": self.sku,
            "name": self.name,
            "slug": self.slug,
            "description": self.description,
            "collection": self.collection.slug if self.collection else None,
            "materials": [m.slug for m in self.materials.all()],
            "price": str(self.price),
            "currency": self.currency,
            "is_active": self.is_active,
            "stock": stock.quantity if stock is not None else 0,
        }
