from __future__ import annotations

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from jewelry_shop.catalog.cache import invalidate_product
from jewelry_shop.core.http import BadRequest, error, json_body
from jewelry_shop.inventory.models import Stock


@csrf_exempt
@require_http_methods(["GET", "PUT"])
def stock_detail(request: HttpRequest, product_id: int) -> JsonResponse:
    stock = Stock.objects.filter(product_id=product_id).first()
    if stock is None:
        return error("not found", 404)
    if request.method == "PUT":
        try:
            quantity = int(json_body(request).get("quantity", -1))
        except (BadRequest, TypeError, ValueError):
            return error("quantity must be a non-negative integer", 400)
        if quantity < 0:
            return error("quantity must be a non-negative integer", 400)
        stock.quantity = quantity
        stock.save(update_fields=["quantity", "updated_at"])
    return JsonResponse(stock.as_dict())


@csrf_exempt
@require_POST
def restock(request: HttpRequest) -> JsonResponse:
    """Add quantities to many products in one statement batch (``cursor.executemany``).

    Body: ``{"items": [{"product": <id>, "quantity": <n>}, ...]}``. Raw SQL on purpose: it
    is the one write path that bypasses model instances (so no model metrics, but
    ``django_db_execute_many_total`` counts each row).
    """
    try:
        items = json_body(request).get("items")
        if not isinstance(items, list) or not items:
            raise BadRequest("items must be a non-empty list")
        rows = [(int(i["quantity"]), int(i["product"])) for i in items]
    except (BadRequest, KeyError, TypeError, ValueError):
        return error("items must be a list of {product, quantity} integers", 400)
    if any(q <= 0 for q, _ in rows):
        return error("quantities must be positive", 400)
    table = Stock._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET quantity = quantity + %s WHERE product_id = %s", rows
        )
    for _, product_id in rows:
        invalidate_product(product_id)
    return JsonResponse({"restocked": len(rows)})
