from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from jewelry_shop.core.http import BadRequest, error, json_body, paginate
from jewelry_shop.orders.models import Order
from jewelry_shop.orders.services import OrderError, place_order


@csrf_exempt
@require_http_methods(["GET", "POST"])
def order_list(request: HttpRequest) -> JsonResponse:
    try:
        if request.method == "GET":
            offset, limit = paginate(request)
            qs = Order.objects.prefetch_related("items")
            if request.GET.get("customer"):
                qs = qs.filter(customer_id=int(request.GET["customer"]))
            return JsonResponse({"results": [o.as_dict() for o in qs[offset : offset + limit]]})
        data = json_body(request)
        try:
            customer_id = int(data["customer"])
            items = [(int(i["product"]), int(i["quantity"])) for i in data["items"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest("expected {customer, items: [{product, quantity}]}") from exc
        order = place_order(customer_id, items)
    except (BadRequest, OrderError) as exc:
        return error(str(exc), exc.status)
    except ValueError:
        return error("customer must be an integer", 400)
    order.refresh_from_db()
    return JsonResponse(order.as_dict(), status=201)


@require_GET
def order_detail(request: HttpRequest, pk: int) -> JsonResponse:
    order = Order.objects.prefetch_related("items").filter(pk=pk).first()
    if order is None:
        return error("not found", 404)
    return JsonResponse(order.as_dict())
