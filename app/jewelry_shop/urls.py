from django.conf import settings
from django.urls import include, path

from jewelry_shop.catalog import views as catalog
from jewelry_shop.core import views as core
from jewelry_shop.customers import views as customers
from jewelry_shop.inventory import views as inventory
from jewelry_shop.orders import views as orders

# URL names double as the `view` label of django-prometheus's per-view metrics.
urlpatterns = [
    path("", catalog.product_list_page, name="product-list-page"),
    path("products/<slug:slug>/", catalog.product_detail_page, name="product-detail-page"),
    path("api/materials/", catalog.material_list, name="material-list"),
    path("api/collections/", catalog.collection_list, name="collection-list"),
    path("api/products/", catalog.product_list, name="product-list"),
    path("api/products/<int:pk>/", catalog.product_detail, name="product-detail"),
    path("api/inventory/restock/", inventory.restock, name="inventory-restock"),
    path("api/inventory/<int:product_id>/", inventory.stock_detail, name="stock-detail"),
    path("api/customers/", customers.customer_list, name="customer-list"),
    path("api/customers/<int:pk>/", customers.customer_detail, name="customer-detail"),
    path("api/orders/", orders.order_list, name="order-list"),
    path("api/orders/<int:pk>/", orders.order_detail, name="order-detail"),
    path("healthz", core.healthz, name="healthz"),
    path("readyz", core.readyz, name="readyz"),
    path("debug/error", core.deliberate_error, name="deliberate-error"),
]

if settings.PROMETHEUS_ENABLED:
    urlpatterns.append(path("", include("jewelry_monitoring_django.urls")))
