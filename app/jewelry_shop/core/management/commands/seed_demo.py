"""Seed demo data: materials, collections, products with stock, customers. Idempotent."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from jewelry_shop.catalog.models import Collection, Material, Product
from jewelry_shop.customers.models import Customer
from jewelry_shop.inventory.models import Stock

MATERIALS = [
    ("Yellow Gold", "yellow-gold", "18k"),
    ("White Gold", "white-gold", "14k"),
    ("Rose Gold", "rose-gold", "18k"),
    ("Sterling Silver", "sterling-silver", "925"),
    ("Platinum", "platinum", "950"),
    ("Diamond", "diamond", "VS1"),
    ("Sapphire", "sapphire", ""),
    ("Pearl", "pearl", "Akoya"),
]
COLLECTIONS = [
    ("Aurora", "aurora", "Light-catching everyday pieces."),
    ("Heritage", "heritage", "Classic designs from our archive."),
    ("Solstice", "solstice", "Bold statement jewelry."),
]
KINDS = ["Ring", "Necklace", "Bracelet", "Earrings", "Pendant", "Brooch"]
ADJECTIVES = ["Classic", "Twisted", "Halo", "Infinity", "Vintage", "Minimal", "Royal"]


class Command(BaseCommand):
    help = "Create demo catalog, stock and customers (skips what already exists)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--products", type=int, default=40)
        parser.add_argument("--customers", type=int, default=20)
        parser.add_argument("--stock", type=int, default=1000, help="initial stock per product")
        parser.add_argument("--seed", type=int, default=42)

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        rng = random.Random(options["seed"])
        materials = [
            Material.objects.get_or_create(slug=slug, defaults={"name": name, "purity": purity})[0]
            for name, slug, purity in MATERIALS
        ]
        collections = [
            Collection.objects.get_or_create(slug=slug, defaults={"name": n, "description": d})[0]
            for n, slug, d in COLLECTIONS
        ]
        existing = set(Product.objects.values_list("sku", flat=True))
        new_products = []
        for i in range(options["products"]):
            sku = f"JS-{i + 1:05d}"
            if sku in existing:
                continue
            name = f"{rng.choice(ADJECTIVES)} {rng.choice(KINDS)} {i + 1}"
            new_products.append(
                Product(
                    sku=sku,
                    name=name,
                    slug=f"{name.lower().replace(' ', '-')}",
                    description=f"Handcrafted {name.lower()}.",
                    collection=rng.choice(collections),
                    price=Decimal(rng.randrange(4900, 250000)) / 100,
                )
            )
        # bulk_create: fast, but NOT counted by django_model_inserts_total (by design of
        # django-prometheus: only instance save() is instrumented).
        created = Product.objects.bulk_create(new_products)
        created = list(Product.objects.filter(sku__in=[p.sku for p in new_products]))
        Stock.objects.bulk_create([Stock(product=p, quantity=options["stock"]) for p in created])
        through = Product.materials.through
        through.objects.bulk_create(
            [
                through(product_id=p.pk, material_id=m.pk)
                for p in created
                for m in rng.sample(materials, k=2)
            ]
        )
        existing_emails = set(Customer.objects.values_list("email", flat=True))
        customers = [
            Customer(email=f"customer{i + 1}@example.com", name=f"Customer {i + 1}")
            for i in range(options["customers"])
            if f"customer{i + 1}@example.com" not in existing_emails
        ]
        Customer.objects.bulk_create(customers)
        self.stdout.write(
            f"seeded {len(created)} products, {len(customers)} customers "
            f"({Product.objects.count()} products, {Customer.objects.count()} customers total)"
        )
