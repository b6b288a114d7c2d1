"""The cache of our children (pure): what the watches report, and when a reconcile may
trust a child to be up to date without reading it."""

from __future__ import annotations

from typing import Any

from jewelry_monitoring.builders.common import OWNER_LABEL, SPEC_HASH_ANNOTATION
from jewelry_monitoring.children import Child, ChildCache, content_version, watched_whole

PART = "children-Deployment-all"


def _deployment(
    name: str = "shop-redis-exporter",
    version: str = "1",
    generation: int = 1,
    owner: str = "shop",
    uid: str = "u1",
    labels: dict[str, str] | None = None,
    available: int = 0,
) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"child-{name}",
            "resourceVersion": version,
            "generation": generation,
            "labels": {OWNER_LABEL: owner, **(labels or {})},
            "annotations": {SPEC_HASH_ANNOTATION: "h1"},
            "ownerReferences": [{"uid": uid, "controller": True}],
        },
        "spec": {"replicas": 1},
        "status": {"availableReplicas": available},
    }


def _cache() -> ChildCache:
    cache = ChildCache([PART])
    assert not cache.complete()
    cache.listed(PART, "Deployment", "", [_deployment()])
    assert cache.complete()
    return cache


def test_children_are_found_by_owner_label_and_reduced_to_what_reconciles_read() -> None:
    cache = _cache()
    (key, child), *others = cache.owned_by("ns", "shop").items()
    assert others == []
    assert key == ("Deployment", "shop-redis-exporter")
    assert child.owner_uids == ("u1",)
    assert child.spec_hash == "h1"
    assert child.as_object()["spec"] == {"replicas": 1}
    assert cache.owned_by("ns", "other") == {}
    assert cache.owned_by("elsewhere", "shop") == {}


def test_up_to_date_only_at_the_version_a_reconcile_marked() -> None:
    cache = _cache()
    child = cache.owned_by("ns", "shop")["Deployment", "shop-redis-exporter"]
    assert not cache.known_up_to_date(child, "h1")  # never compared: must be read once
    cache.mark_up_to_date(_deployment(), "h1")
    assert cache.known_up_to_date(child, "h1")
    assert not cache.known_up_to_date(child, "h2")  # the spec changed since

    # A hand edit of the spec (generation) or of the labels: read and compare again.
    for edited in (_deployment(generation=2), _deployment(labels={"x": "y"})):
        cache.event("Deployment", "MODIFIED", edited)
        child = cache.owned_by("ns", "shop")["Deployment", "shop-redis-exporter"]
        assert not cache.known_up_to_date(child, "h1")
        cache.listed(PART, "Deployment", "", [_deployment()])


def test_a_status_update_keeps_a_deployment_up_to_date_and_brings_its_counts() -> None:
    cache = _cache()
    cache.mark_up_to_date(_deployment(), "h1")
    owners = cache.event("Deployment", "MODIFIED", _deployment(version="2", available=1))
    assert owners == {("ns", "shop")}  # ExportersAvailable may change: reconcile it
    child = cache.owned_by("ns", "shop")["Deployment", "shop-redis-exporter"]
    assert cache.known_up_to_date(child, "h1")
    assert child.as_object()["status"] == {"availableReplicas": 1}


def test_the_deployment_controllers_revision_annotation_is_no_edit() -> None:
    cache = _cache()
    cache.mark_up_to_date(_deployment(), "h1")
    revised = _deployment(version="2")
    revised["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"
    cache.event("Deployment", "MODIFIED", revised)
    child = cache.owned_by("ns", "shop")["Deployment", "shop-redis-exporter"]
    assert cache.known_up_to_date(child, "h1")


def test_other_kinds_are_up_to_date_only_at_the_same_resource_version() -> None:
    config_map = {**_deployment(), "kind": "ConfigMap"}
    assert content_version(config_map) == "1"
    assert (
        content_version(
            {**config_map, "metadata": {**config_map["metadata"], "resourceVersion": "2"}}
        )
        == "2"
    )


def test_deleted_and_relisted_away_children_are_forgotten_with_their_marks() -> None:
    cache = _cache()
    cache.mark_up_to_date(_deployment(), "h1")
    assert cache.event("Deployment", "DELETED", _deployment()) == {("ns", "shop")}
    assert cache.owned_by("ns", "shop") == {}
    cache.event("Deployment", "ADDED", _deployment())
    child = cache.owned_by("ns", "shop")["Deployment", "shop-redis-exporter"]
    assert not cache.known_up_to_date(child, "h1")  # a new object: never compared

    # A watch that expired lists again: what it no longer lists is gone, owners told.
    assert cache.listed(PART, "Deployment", "", [_deployment(name="b")]) == {("ns", "shop")}
    assert list(cache.owned_by("ns", "shop")) == [("Deployment", "b")]


def test_a_child_just_written_is_known_before_its_watch_event_which_then_concerns_nobody() -> None:
    cache = ChildCache([PART])
    cache.listed(PART, "Deployment", "", [])
    cache.mark_up_to_date(_deployment(), "h1")  # as apply returned it
    child = cache.owned_by("ns", "shop")["Deployment", "shop-redis-exporter"]
    assert cache.known_up_to_date(child, "h1")
    assert cache.event("Deployment", "ADDED", _deployment()) == set()
    # A change the watch reports after it (someone else's) is not up to date.
    assert cache.event("Deployment", "MODIFIED", _deployment(generation=2)) == {("ns", "shop")}
    child = cache.owned_by("ns", "shop")["Deployment", "shop-redis-exporter"]
    assert not cache.known_up_to_date(child, "h1")


def test_an_unchanged_event_concerns_nobody() -> None:
    cache = _cache()
    assert cache.event("Deployment", "MODIFIED", _deployment()) == set()


def test_a_reconciles_older_copy_never_overwrites_what_the_watch_reported_since() -> None:
    """A reconcile read a child (up to date); before it marked it so, the watch reported a
    hand edit. Marking must not put the older copy back: the next reconcile would trust it
    and never revert the edit (with the resync off, never at all)."""
    cache = _cache()
    read = _deployment(version="2")  # the reconcile's GET
    assert cache.event("Deployment", "MODIFIED", _deployment(version="3", generation=2))
    cache.mark_up_to_date(read, "h1")
    child = cache.owned_by("ns", "shop")["Deployment", "shop-redis-exporter"]
    assert child.version.startswith("2/")  # the edit, as the watch reported it
    assert not cache.known_up_to_date(child, "h1")


def test_a_child_deleted_before_the_reconcile_that_wrote_it_marked_it_stays_deleted() -> None:
    """Created by a reconcile, then deleted (its ADDED and DELETED events both came before
    the reconcile marked it): marking must not bring it back into the cache, where the next
    reconcile would find it up to date and never create it again."""
    cache = ChildCache([PART])
    cache.listed(PART, "Deployment", "", [])
    created = _deployment()
    cache.event("Deployment", "ADDED", created)
    cache.event("Deployment", "DELETED", created)
    cache.mark_up_to_date(created, "h1")
    assert cache.owned_by("ns", "shop") == {}


def test_the_event_of_our_own_update_concerns_nobody_and_is_then_up_to_date() -> None:
    """A reconcile updated a child: until the watch reports that update, the cache holds the
    version before it (a GET if asked); the update's own event then re-queues nobody."""
    cache = _cache()
    updated = _deployment(version="2", generation=2)  # as apply returned it
    cache.mark_up_to_date(updated, "h1")
    before = cache.owned_by("ns", "shop")["Deployment", "shop-redis-exporter"]
    assert not cache.known_up_to_date(before, "h1")
    assert cache.event("Deployment", "MODIFIED", updated) == set()
    child = cache.owned_by("ns", "shop")["Deployment", "shop-redis-exporter"]
    assert cache.known_up_to_date(child, "h1")


def test_status_counts_read_before_the_watch_brought_them_still_concern_the_owner() -> None:
    """A reconcile read newer replica counts than the watch had shown (same spec version); a
    reconcile after it may have used the watch's older counts for ExportersAvailable, so the
    counts' own event must still re-queue the owner."""
    cache = _cache()
    read = _deployment(version="2", available=1)
    cache.mark_up_to_date(read, "h1")
    assert cache.event("Deployment", "MODIFIED", read) == {("ns", "shop")}


def test_a_listed_child_reduced_to_what_the_cache_reads_gives_the_same_record() -> None:
    """The watches' lists keep only this of each child (24,000 whole children held until
    the last page took a restarted operator past its memory limit)."""
    from jewelry_monitoring.children import reduced

    deployment = {
        "kind": "Deployment",
        "metadata": {
            "name": "shop-redis-exporter",
            "namespace": "shop",
            "uid": "d1",
            "resourceVersion": "42",
            "generation": 3,
            "labels": {"monitoring.jewelry.io/owner": "shop"},
            "annotations": {"monitoring.jewelry.io/spec-hash": "abc"},
            "ownerReferences": [{"uid": "u1", "kind": "JewelryMonitoring"}],
            "managedFields": [
                {"manager": "jewelry-monitoring", "operation": "Apply", "fieldsV1": {"f:a": {}}},
                {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {}},
            ],
        },
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "x"}]}}},
        "status": {"availableReplicas": 1, "conditions": [{"type": "Available"}]},
    }
    small = reduced(deployment)
    assert Child.of(small) == Child.of(deployment)
    assert Child.of(small).applied is not None
    assert "template" not in small["spec"] and "conditions" not in small["status"]
    config_map = {"metadata": {"name": "c", "namespace": "shop", "resourceVersion": "7"}}
    assert Child.of({"kind": "ConfigMap", **reduced(config_map)}) == Child.of(
        {"kind": "ConfigMap", **config_map}
    )


def test_children_the_watches_bring_as_metadata_are_recorded_under_the_watched_kind() -> None:
    """Only Deployments are watched whole (their replica counts); every other kind comes as
    PartialObjectMetadata, whose own kind must not replace the watch's: a PrometheusRule is
    ~35 KB and a dashboard ConfigMap ~19 KB of which the cache keeps nothing."""
    whole = {
        "kind": "PrometheusRule",
        "metadata": {
            "name": "shop-rules",
            "namespace": "ns",
            "uid": "r1",
            "resourceVersion": "9",
            "labels": {OWNER_LABEL: "shop"},
            "annotations": {SPEC_HASH_ANNOTATION: "h2"},
            "ownerReferences": [{"uid": "u1"}],
            "managedFields": [
                {"manager": "jewelry-monitoring", "operation": "Apply", "fieldsV1": {"f:a": {}}}
            ],
        },
        "spec": {"groups": [{"name": "g", "rules": []}]},
    }
    as_metadata = {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": whole["metadata"],
    }
    part = "children-PrometheusRule-all"
    cache = ChildCache([part])
    cache.listed(part, "PrometheusRule", "", [as_metadata])
    assert cache.owned_by("ns", "shop") == {("PrometheusRule", "shop-rules"): Child.of(whole)}
    cache.event("PrometheusRule", "MODIFIED", as_metadata)
    assert list(cache.owned_by("ns", "shop")) == [("PrometheusRule", "shop-rules")]
    assert cache.event("PrometheusRule", "DELETED", as_metadata) == {("ns", "shop")}
    assert watched_whole("Deployment") and not watched_whole("PrometheusRule")
