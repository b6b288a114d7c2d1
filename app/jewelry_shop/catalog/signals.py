"""Invalidate the product cache whenever a product, its materials or its stock change."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from jewelry_shop.catalog.cache import invalidate_product
from jewelry_shop.catalog.models import Product
from jewelry_shop.inventory.models import Stock


def _invalidate_after_commit(product_id: int) -> None:
    invalidate_product(product_id)
    if transaction.get_connection().in_atomic_block:
        # Again after commit: a concurrent reader may have re-filled the cache from the
        # pre-commit state in between.
        transaction.on_commit(lambda: invalidate_product(product_id))


@receiver(post_save, sender=Product)
@receiver(post_delete, sender=Product)
def _product_changed(sender: type, instance: Product, **kwargs: Any) -> None:
    _invalidate_after_commit(instance.pk)


@receiver(post_save, sender=Stock)
@receiver(post_delete, sender=Stock)
def _stock_changed(sender: type, instance: Stock, **kwargs: Any) -> None:
    _invalidate_after_commit(instance.product_id)


@receiver(m2m_changed, sender=Product.materials.through)
def _materials_changed(sender: type, instance: object, **kwargs: Any) -> None:
    if isinstance(instance, Product) and kwargs.get("action", "").startswith("post_"):
        _invalidate_after_commit(instance.pk)
