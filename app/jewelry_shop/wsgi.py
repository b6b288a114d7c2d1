import os

from django.core.wsgi import get_wsgi_application

from jewelry_shop.env import env_bool

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jewelry_shop.settings")

if env_bool("OTEL_TRACING", False):
    from jewelry_shop.tracing import instrument

    instrument()

application = get_wsgi_application()
