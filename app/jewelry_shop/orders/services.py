"""Order placement: stock is checked and decremented in the same transaction."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from django.db import transaction

from jewelry_shop.catalog.models import Product
from jewelry_shop.customers.models import Customer
from jewelry_shop.inventory.models import Stock
from jewelry_shop.orders.models import Order, OrderItem


class OrderError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def place_order(customer_id: int, items: list[tuple[int, int]]) -> Order:
    """Create an order for ``items`` = [(product_id, quantity), ...].

    Stock rows are locked (``SELECT ... FOR UPDATE``, in product-id order to avoid
    deadlocks) and decremented atomically with the order insert; insufficient stock aborts
    the whole order. The confirmation task is queued only after commit.
    """
    wanted: Counter[int] = Counter()
    for product_id, quantity in items:
        if quantity <= 0:
            raise OrderError("quantities must be positive")
        wanted[product_id] += quantity
    if not wanted:
        raise OrderError("an order needs at least one item")
    with transaction.atomic():
        customer = Customer.objects.filter(pk=customer_id).first()
        if customer is None:
            raise OrderError("unknown customer", 404)
        stocks = {
            s.product_id: s
            for s in Stock.objects.select_for_update()
            .filter(product_id__in=sorted(wanted))
            .order_by("product_id")
        }
        products = Product.objects.in_bulk(list(wanted))
        total = Decimal("0.00")
        for product_id, quantity in sorted(wanted.items()):
            product = products.get(product_id)
            stock = stocks.get(product_id)
            if product is None or not product.is_active or stock is None:
                raise OrderError(f"unknown product {product_id}", 404)
            if stock.quantity < quantity:
                raise OrderError(f"insufficient stock for product {product_id}", 409)
            total += product.price * quantity
        order = Order(customer=customer, total=total)
        order.save()
        for product_id, quantity in sorted(wanted.items()):
            stock = stocks[product_id]
            stock.quantity -= quantity
            stock.save(update_fields=["quantity", "updated_at"])
            OrderItem(
                order=order,
                product_id=product_id,
                quantity=quantity,
                unit_price=products[product_id].price,
            ).save()
        transaction.on_commit(lambda: _queue_confirmation(order.pk))
    return order


def _queue_confirmation(order_id: int) -> None:
    from jewelry_shop.orders.tasks import send_order_confirmation

    send_order_confirmation.delay(order_id)
