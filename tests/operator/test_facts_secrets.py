"""Secrets in ClusterFacts (pure): a reconcile reads a referenced Secret once per version
its watch reports; values are never kept."""

from __future__ import annotations

from typing import Any

from jewelry_monitoring.facts import ClusterFacts


def _secret(name: str = "db", version: str = "1", namespace: str = "shop") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": version}}


def _read(version: str = "1", name: str = "db") -> dict[str, Any]:
    """A Secret as a GET returns it: with its data."""
    return {**_secret(name, version), "data": {"dsn": "cG9zdGdyZXM6Ly8="}}


def test_key_names_are_trusted_only_at_the_version_the_watch_reports() -> None:
    facts = ClusterFacts(frozenset())
    assert facts.secret_key_names("shop", "db") is None  # never read
    assert facts.remember_secret_keys(_read()) == {"dsn"}
    assert facts.secret_key_names("shop", "db") is None  # the watch has not shown it
    facts.set_secrets(None, [_secret()])
    assert facts.secret_key_names("shop", "db") == {"dsn"}

    assert facts.secret_event("MODIFIED", _secret(version="2")) == ("shop", "db")
    assert facts.secret_key_names("shop", "db") is None  # changed: read again

    facts.remember_secret_keys(_read(version="2"))
    assert facts.secret_key_names("shop", "db") == {"dsn"}
    facts.secret_event("DELETED", _secret(version="2"))
    assert facts.secret_key_names("shop", "db") is None


def test_a_relist_reports_what_changed_and_forgets_what_is_gone() -> None:
    facts = ClusterFacts(frozenset())
    facts.set_secrets(None, [_secret(), _secret("broker")])
    facts.remember_secret_keys(_read())
    changed = facts.set_secrets(None, [_secret("broker"), _secret("new")])
    assert changed == {("shop", "db"), ("shop", "new")}
    facts.set_secrets(None, [_secret("broker"), _secret("new"), _secret()])
    assert facts.secret_key_names("shop", "db") is None  # forgotten when it went


def test_listing_one_namespace_leaves_the_others_alone() -> None:
    facts = ClusterFacts(frozenset())
    facts.set_secrets("shop", [_secret()])
    facts.remember_secret_keys(_read())
    assert facts.set_secrets("blog", []) == set()
    assert facts.secret_key_names("shop", "db") == {"dsn"}


def test_values_are_not_kept() -> None:
    facts = ClusterFacts(frozenset())
    facts.set_secrets(None, [_secret()])
    facts.remember_secret_keys(_read())
    assert "cG9zdGdyZXM6Ly8=" not in repr(vars(facts))
