"""Product detail cache: read-through on detail views, invalidated on any change."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache

from jewelry_shop.catalog.models import Product


def product_key(product_id: int) -> str:
    return f"product:{product_id}:v1"


def get_product_data(product_id: int) -> dict[str, object] | None:
    """Cached ``Product.as_dict()`` (None if the product does not exist or is inactive)."""
    key = product_key(product_id)
    data = cache.get(key)
    if data is not None:
        return data
    product = (
        Product.objects.select_related("collection", "stock")
        .prefetch_related("materials")
        .filter(pk=product_id, is_active=True)
        .first()
    )
    if product is None:
        return None
    data = product.as_dict()
    cache.set(key, data, settings.CACHE_TIMEOUT)
    return data


def invalidate_product(product_id: int) -> None:
    cache.delete(product_key(product_id))
