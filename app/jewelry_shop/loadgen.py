"""Bounded load generator for the jewelry shop (loopback targets only).

    python -m jewelry_shop.loadgen http://127.0.0.1:8000 --requests 500 --duration 30

Each *cycle* walks every view once -- HTML pages, every API endpoint with each method,
health/readiness, a few 404s, a duplicate-customer 409 and the deliberate error endpoint
(500 when ``ENABLE_ERROR_ENDPOINT`` is on, 404 otherwise) -- and cycles repeat until the
request budget or the time budget is used up, whichever comes first. Both budgets are
mandatory and capped. Targets that do not resolve exclusively to loopback addresses are
refused: this is a test tool, not a stress tool for other people's servers.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import random
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_REQUESTS = 1_000_000
MAX_DURATION = 3600.0


class LoopbackOnlyError(ValueError):
    """The target is not a loopback address."""


def ensure_loopback(url: str) -> tuple[str, int]:
    """Return (host, port) if every address ``url``'s host resolves to is loopback."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LoopbackOnlyError(f"need an http:// URL with a host, got {url!r}")
    port = parts.port or 80
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise LoopbackOnlyError(f"cannot resolve {parts.hostname!r}: {exc}") from exc
    addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    if not addresses or not all(a.is_loopback for a in addresses):
        raise LoopbackOnlyError(
            f"refusing non-loopback target {parts.hostname!r} ({sorted(map(str, addresses))})"
        )
    return parts.hostname, port


@dataclass
class Stats:
    requests: int = 0
    failures: int = 0  # connection-level errors (no HTTP status)
    by_status: Counter[int] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "elapsed_seconds": round(self.elapsed, 3),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_route": dict(sorted(self.by_route.items())),
        }


class _Budget(Exception):
    pass


class LoadGenerator:
    def __init__(
        self,
        base_url: str,
        *,
        max_requests: int,
        duration: float,
        seed: int = 0,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not 0 < max_requests <= MAX_REQUESTS:
            raise ValueError(f"max_requests must be in 1..{MAX_REQUESTS}")
        if not 0 < duration <= MAX_DURATION:
            raise ValueError(f"duration must be in (0, {MAX_DURATION}]")
        self.host, self.port = ensure_loopback(base_url)
        self.max_requests = max_requests
        self.duration = duration
        self.timeout = timeout
        self.rng = random.Random(seed)
        self.headers = dict(headers or {})
        self.stats = Stats()
        self._conn: http.client.HTTPConnection | None = None
        self._deadline = 0.0

    # -- HTTP -------------------------------------------------------------------------
    def request(self, method: str, path: str, route: str, body: Any = None) -> tuple[int, Any]:
        if self.stats.requests >= self.max_requests or time.monotonic() >= self._deadline:
            raise _Budget
        self.stats.requests += 1
        self.stats.by_route[f"{method} {route}"] += 1
        headers = {"Accept": "application/json", **self.headers}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=payload, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self._close()
                break
            except (OSError, http.client.HTTPException):
                self._close()
                if attempt == 2:
                    self.stats.failures += 1
                    return 0, None
        self.stats.by_status[resp.status] += 1
        data: Any = None
        if raw and resp.getheader("Content-Type", "").startswith("application/json"):
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
        return resp.status, data

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- scenario ---------------------------------------------------------------------
    def _cycle(self) -> Iterator[Callable[[], Any]]:
        rnd = self.rng
        tag = uuid.uuid4().hex[:10]
        state: dict[str, Any] = {}

        def discover() -> None:
            _, data = self.request("GET", "/api/products/?limit=200", "/api/products/")
            state["products"] = (data or {}).get("results", [])
            _, data = self.request("GET", "/api/customers/?limit=200", "/api/customers/")
            state["customers"] = (data or {}).get("results", [])

        yield discover
        yield lambda: self.request("GET", "/", "/")
        yield lambda: self.request("GET", "/api/materials/", "/api/materials/")
        yield lambda: self.request("GET", "/api/collections/", "/api/collections/")

        def product_reads() -> None:
            for p in rnd.sample(state["products"], k=min(3, len(state["products"]))):
                self.request("GET", f"/api/products/{p['id']}/", "/api/products/<id>/")
                self.request("GET", f"/products/{p['slug']}/", "/products/<slug>/")
                self.request("GET", f"/api/inventory/{p['id']}/", "/api/inventory/<id>/")

        yield product_reads

        def customer() -> None:
            status, data = self.request(
                "POST",
                "/api/customers/",
                "/api/customers/",
                {"email": f"load-{tag}@example.com", "name": f"Load {tag}"},
            )
            if status == 201:
                state["customers"].append(data)
                self.request("GET", f"/api/customers/{data['id']}/", "/api/customers/<id>/")
            # duplicate email -> unique violation in the database -> 409
            self.request(
                "POST",
                "/api/customers/",
                "/api/customers/",
                {"email": f"load-{tag}@example.com", "name": "Duplicate"},
            )

        yield customer

        def product_writes() -> None:
            status, data = self.request(
                "POST",
                "/api/products/",
                "/api/products/",
                {
                    "sku": f"LG-{tag}",
                    "name": f"Load Ring {tag}",
                    "slug": f"load-ring-{tag}",
                    "price": "99.00",
                    "stock": 50,
                },
            )
            if status != 201:
                return
            pid = data["id"]
            self.request("GET", f"/api/products/{pid}/", "/api/products/<id>/")
            self.request(
                "PATCH", f"/api/products/{pid}/", "/api/products/<id>/", {"price": "109.00"}
            )
            self.request("PUT", f"/api/inventory/{pid}/", "/api/inventory/<id>/", {"quantity": 60})
            self.request(
                "POST",
                "/api/inventory/restock/",
                "/api/inventory/restock/",
                {"items": [{"product": pid, "quantity": 5}]},
            )
            self.request("DELETE", f"/api/products/{pid}/", "/api/products/<id>/")

        yield product_writes

        def order() -> None:
            products = [p for p in state["products"] if p.get("stock", 0) > 2]
            if not products or not state["customers"]:
                return
            p = rnd.choice(products)
            c = rnd.choice(state["customers"])
            status, data = self.request(
                "POST",
                "/api/orders/",
                "/api/orders/",
                {"customer": c["id"], "items": [{"product": p["id"], "quantity": 1}]},
            )
            if status == 201:
                self.request("GET", f"/api/orders/{data['id']}/", "/api/orders/<id>/")
            self.request("GET", f"/api/orders/?customer={c['id']}", "/api/orders/")
            # more than in stock -> 409, nothing changes
            self.request(
                "POST",
                "/api/orders/",
                "/api/orders/",
                {"customer": c["id"], "items": [{"product": p["id"], "quantity": 10**6}]},
            )

        yield order
        yield lambda: self.request("GET", "/healthz", "/healthz")
        yield lambda: self.request("GET", "/readyz", "/readyz")
        # 404s: unknown route, unknown product (API and page), unknown order
        yield lambda: self.request("GET", f"/no-such-page-{tag}", "<404>")
        yield lambda: self.request("GET", "/api/products/999999999/", "/api/products/<id>/")
        yield lambda: self.request("GET", "/products/no-such-product/", "/products/<slug>/")
        yield lambda: self.request("GET", "/api/orders/999999999/", "/api/orders/<id>/")
        yield lambda: self.request("GET", "/debug/error", "/debug/error")

    def run(self) -> Stats:
        start = time.monotonic()
        self._deadline = start + self.duration
        try:
            while True:
                for step in self._cycle():
                    step()
        except _Budget:
            pass
        finally:
            self._close()
            self.stats.elapsed = time.monotonic() - start
        return self.stats


def run(base_url: str, *, requests: int, duration: float, **kwargs: Any) -> Stats:
    """Run the load generator; see the module docstring."""
    return LoadGenerator(base_url, max_requests=requests, duration=duration, **kwargs).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="base URL, e.g. http://127.0.0.1:8000 (loopback only)")
    parser.add_argument("--requests", type=int, default=500, help="request budget (max)")
    parser.add_argument("--duration", type=float, default=30.0, help="time budget, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        stats = run(args.url, requests=args.requests, duration=args.duration, seed=args.seed)
    except (LoopbackOnlyError, ValueError) as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats.as_dict(), indent=2))
    return 0 if stats.failures == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
