"""Small JSON helpers shared by the API views."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("expected a JSON object")
    return data


def error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def paginate(request: HttpRequest, default: int = 50, maximum: int = 200) -> tuple[int, int]:
    try:
        limit = min(max(int(request.GET.get("limit", default)), 1), maximum)
        offset = max(int(request.GET.get("offset", 0)), 0)
    except ValueError as exc:
        raise BadRequest("limit/offset must be integers") from exc
    return offset, limit
