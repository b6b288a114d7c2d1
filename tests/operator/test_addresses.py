"""The addresses exporters connect to: whatever text a user writes, validation answers with a
message naming the field (the resource becomes InvalidSpec), never with an exception that
would fail every reconcile of it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jewelry_monitoring.builders.rules import KNOWN_ALERTS
from jewelry_monitoring.spec import validate

FIELDS = {"redis": "address", "nginx": "scrapeUri"}


def problems(exporter: str, address: str) -> list[str]:
    raw: dict[str, Any] = {
        "app": {"podSelector": {"app": "x"}},
        "exporters": {exporter: {"enabled": True, FIELDS[exporter]: address}},
    }
    return validate(raw, KNOWN_ALERTS)[0]


@pytest.mark.parametrize(
    ("exporter", "address"),
    [
        ("redis", "redis://[::1"),
        ("redis", "[fd00::1:6379"),
        ("nginx", "http://[::1/stub_status"),
        ("nginx", "http://[not-an-address]/stub_status"),
    ],
)
def test_a_malformed_address_is_an_invalid_spec_not_an_exception(
    exporter: str, address: str
) -> None:
    (problem,) = problems(exporter, address)
    assert problem.startswith(f"exporters.{exporter}.{FIELDS[exporter]}: it is not a URL")


@settings(max_examples=300)
@given(
    exporter=st.sampled_from(sorted(FIELDS)),
    address=st.text(alphabet="redis:/[]@%:.?#0123456789abcdef-", min_size=1, max_size=30),
)
def test_no_address_makes_validation_raise(exporter: str, address: str) -> None:
    prefix = {"redis": "", "nginx": "http://"}[exporter]
    for problem in problems(exporter, prefix + address):
        assert problem.startswith(f"exporters.{exporter}."), problem
