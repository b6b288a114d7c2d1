from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from jewelry_shop.catalog.cache import get_product_data
from jewelry_shop.catalog.models import Collection, Material, Product
from jewelry_shop.core.http import BadRequest, error, json_body, paginate
from jewelry_shop.inventory.models import Stock


def _products(request: HttpRequest, *, with_materials: bool = True):  # type: ignore[no-untyped-def]
    qs = Product.objects.filter(is_active=True).select_related("collection", "stock")
    if request.GET.get("collection"):
        qs = qs.filter(collection__slug=request.GET["collection"])
    if request.GET.get("material"):
        qs = qs.filter(materials__slug=request.GET["material"])
    return qs.prefetch_related("materials") if with_materials else qs


@require_GET
def material_list(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"results": [m.as_dict() for m in Material.objects.all()]})


@require_GET
def collection_list(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"results": [c.as_dict() for c in Collection.objects.all()]})


def _price(value: object) -> Decimal:
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise BadRequest("price must be a decimal") from exc
    if not price.is_finite() or price < 0 or price != price.quantize(Decimal("0.01")):
        raise BadRequest("price must be >= 0 with at most 2 decimals")
    if price >= Decimal("1e8"):
        raise BadRequest("price too large")
    return price


def _quantity(value: object) -> int:
    try:
        quantity = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise BadRequest("stock must be a non-negative integer") from exc
    if quantity < 0:
        raise BadRequest("stock must be a non-negative integer")
    return quantity


@csrf_exempt
@require_http_methods(["GET", "POST"])
def product_list(request: HttpRequest) -> JsonResponse:
    try:
        if request.method == "GET":
            offset, limit = paginate(request)
            qs = _products(request)
            return JsonResponse(
                {
                    "count": qs.count(),
                    "results": [p.as_dict() for p in qs[offset : offset + limit]],
                }
            )
        data = json_body(request)
        missing = {"sku", "name", "slug", "price"} - data.keys()
        if missing:
            raise BadRequest(f"missing fields: {sorted(missing)}")
        with transaction.atomic():
            collection = None
            if data.get("collection"):
                collection = Collection.objects.filter(slug=data["collection"]).first()
                if collection is None:
                    raise BadRequest("unknown collection")
            product = Product(
                sku=data["sku"],
                name=data["name"],
                slug=data["slug"],
                description=data.get("description", ""),
                collection=collection,
                price=_price(data["price"]),
                currency=data.get("currency", "EUR"),
            )
            product.save()
            if data.get("materials"):
                product.materials.set(Material.objects.filter(slug__in=data["materials"]))
            Stock(product=product, quantity=_quantity(data.get("stock", 0))).save()
    except BadRequest as exc:
        return error(str(exc), exc.status)
    except IntegrityError:
        return error("a product with this sku or slug already exists", 409)
    return JsonResponse(get_product_data(product.pk) or {}, status=201)


@csrf_exempt
@require_http_methods(["GET", "PATCH", "DELETE"])
def product_detail(request: HttpRequest, pk: int) -> JsonResponse | HttpResponse:
    if request.method == "GET":
        data = get_product_data(pk)
        if data is None:
            return error("not found", 404)
        return JsonResponse(data)
    product = Product.objects.filter(pk=pk).first()
    if product is None:
        return error("not found", 404)
    if request.method == "DELETE":
        try:
            with transaction.atomic():
                product.delete()
        except IntegrityError:  # includes ProtectedError (order items reference it)
            return error("product is referenced by orders; deactivate it instead", 409)
        return HttpResponse(status=204)
    try:
        data = json_body(request)
        for field in ("name", "description", "currency"):
            if field in data:
                setattr(product, field, str(data[field]))
        if "price" in data:
            product.price = _price(data["price"])
        if "is_active" in data:
            product.is_active = bool(data["is_active"])
        product.save()
    except BadRequest as exc:
        return error(str(exc), exc.status)
    return JsonResponse(product.as_dict())


@require_GET
def product_list_page(request: HttpRequest) -> HttpResponse:
    products = _products(request, with_materials=False)[:100]
    # TemplateResponse (not render()) so django_http_responses_total_by_templatename counts.
    return TemplateResponse(
        request,
        "catalog/product_list.html",
        {"products": products, "collections": Collection.objects.all()},
    )


@require_GET
def product_detail_page(request: HttpRequest, slug: str) -> HttpResponse:
    pk = Product.objects.filter(slug=slug, is_active=True).values_list("pk", flat=True).first()
    data = get_product_data(pk) if pk is not None else None
    if data is None:
        raise Http404("no such product")
    return TemplateResponse(request, "catalog/product_detail.html", {"product": data})
