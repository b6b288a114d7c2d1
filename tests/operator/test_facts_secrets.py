"""Secrets in ClusterFacts (pure): a reconcile reads a referenced Secret once per version,
and not at all once its watch has listed it as absent; values are never kept."""

from __future__ import annotations

from typing import Any

from jewelry_monitoring.facts import ClusterFacts


def _secret(name: str = "db", version: str = "1", namespace: str = "shop") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": version}}


def _read(version: str = "1") -> dict[str, Any]:
    """A Secret as a GET returns it: with its data."""
    return {**_secret(version=version), "data": {"dsn": "cG9zdGdyZXM6Ly8="}}


def test_nothing_is_known_absent_until_the_watch_has_listed() -> None:
    facts = ClusterFacts(frozenset())
    assert not facts.secret_absent("shop", "db")  # unknown: read it
    assert facts.set_secrets(None, [_secret()]) == {("shop", "db")}
    assert not facts.secret_absent("shop", "db")
    assert facts.secret_absent("shop", "other")
    assert facts.secret_absent("elsewhere", "db")


def test_key_names_are_trusted_only_at_the_version_read() -> None:
    facts = ClusterFacts(frozenset())
    facts.set_secrets(None, [_secret()])
    assert facts.secret_key_names("shop", "db") is None  # never read
    assert facts.remember_secret_keys(_read()) == {"dsn"}
    assert facts.secret_key_names("shop", "db") == {"dsn"}

    assert facts.secret_event("MODIFIED", _secret(version="2")) == ("shop", "db")
    assert facts.secret_key_names("shop", "db") is None  # changed: read again

    facts.remember_secret_keys(_read(version="2"))
    facts.secret_event("DELETED", _secret(version="2"))
    assert facts.secret_absent("shop", "db")
    assert facts.secret_key_names("shop", "db") is None


def test_a_relist_reports_what_changed_and_forgets_what_is_gone() -> None:
    facts = ClusterFacts(frozenset())
    facts.set_secrets(None, [_secret(), _secret("broker")])
    facts.remember_secret_keys(_read())
    changed = facts.set_secrets(None, [_secret("broker"), _secret("new")])
    assert changed == {("shop", "db"), ("shop", "new")}
    assert facts.secret_absent("shop", "db")
    assert facts.secret_key_names("shop", "db") is None


def test_a_namespaced_watch_answers_for_its_namespace_only() -> None:
    facts = ClusterFacts(frozenset(), secret_namespaces=("shop", "blog"))
    facts.set_secrets("shop", [_secret()])
    assert facts.secret_absent("shop", "other")
    assert not facts.secret_absent("blog", "db")  # that watch has not listed yet
    facts.set_secrets("blog", [])
    assert facts.secret_absent("blog", "db")
    # Listing one namespace leaves the other's Secrets alone.
    facts.set_secrets("blog", [_secret(namespace="blog")])
    assert not facts.secret_absent("shop", "db")


def test_values_are_not_kept() -> None:
    facts = ClusterFacts(frozenset())
    facts.set_secrets(None, [_secret()])
    facts.remember_secret_keys(_read())
    assert "cG9zdGdyZXM6Ly8=" not in repr(vars(facts))
