from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from jewelry_shop.orders.models import Order

logger = logging.getLogger(__name__)


@shared_task(name="orders.send_order_confirmation", bind=True, max_retries=3)
def send_order_confirmation(self, order_id: int) -> str:  # type: ignore[no-untyped-def]
    """Mark the order confirmed and 'send' the confirmation (logged; no mail server)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            logger.warning("order %s vanished before confirmation", order_id)
            return "missing"
        if order.status != Order.Status.PENDING:
            return order.status
        order.status = Order.Status.CONFIRMED
        order.confirmed_at = timezone.now()
        order.save(update_fields=["status", "confirmed_at"])
    logger.info("order %s confirmed for customer %s", order.pk, order.customer_id)
    return order.status
