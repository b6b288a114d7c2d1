from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from jewelry_shop.core.http import BadRequest, error, json_body, paginate
from jewelry_shop.customers.models import Customer


@csrf_exempt
@require_http_methods(["GET", "POST"])
def customer_list(request: HttpRequest) -> JsonResponse:
    try:
        if request.method == "GET":
            offset, limit = paginate(request)
            qs = Customer.objects.all()[offset : offset + limit]
            return JsonResponse({"results": [c.as_dict() for c in qs]})
        data = json_body(request)
        email = str(data.get("email", "")).strip().lower()
        name = str(data.get("name", "")).strip()
        validate_email(email)
        if not name or len(name) > Customer._meta.get_field("name").max_length:
            raise BadRequest("name is required (at most 200 characters)")
    except BadRequest as exc:
        return error(str(exc), exc.status)
    except ValidationError:
        return error("invalid email", 400)
    customer = Customer(email=email, name=name)
    try:
        # The unique constraint is the check: a duplicate raises IntegrityError in the
        # database (counted by django_db_errors_total{type="IntegrityError"}).
        with transaction.atomic():
            customer.save()
    except IntegrityError:
        return error("a customer with this email already exists", 409)
    return JsonResponse(customer.as_dict(), status=201)


@require_GET
def customer_detail(request: HttpRequest, pk: int) -> JsonResponse:
    customer = Customer.objects.filter(pk=pk).first()
    if customer is None:
        return error("not found", 404)
    return JsonResponse(customer.as_dict())
