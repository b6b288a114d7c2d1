"""The kind node image made here (devkit.kindnode): every image kubeadm and kind name is in
its containerd, so nothing is ever pulled; and the multi-image archive that carries them
reads as kind reads it."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from devkit.dockerd import DockerEngine
from devkit.kindnode import (
    KINDNETD_TAG,
    LOCAL_PATH_HELPER_TAG,
    LOCAL_PATH_PROVISIONER_TAG,
    PAUSE_TAG,
    kube_version,
    kubeadm_images,
    merge_archives,
    node_image,
)
from devkit.node import write_image_archive
from devkit.toolchain import binary

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]


def _first_tags(archive: Path) -> list[str]:
    """The tags kind reads from an archive (kind's docker.GetArchiveTags): those of
    whichever of ``repositories`` and ``manifest.json`` comes first, the first image's only
    from ``manifest.json``."""
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.name in ("repositories", "manifest.json"):
                data = tar.extractfile(member)
                assert data is not None
                loaded = json.load(data)
                if member.name == "manifest.json":
                    return list(loaded[0]["RepoTags"])
                return [f"{repo}:{tag}" for repo, tags in loaded.items() for tag in tags]
    return []


def test_a_merged_archive_names_all_its_images_first(engine: DockerEngine, tmp_path: Path) -> None:
    one = write_image_archive(
        tmp_path / "one.tar", "localhost/one:1", {"p": binary("jm-pause")}, ["/p"]
    )
    two = write_image_archive(
        tmp_path / "two.tar", "localhost/two:1", {"q": binary("jm-probe")}, ["/q"]
    )
    merged = tmp_path / "merged.tar"
    tags = {one: ("registry.k8s.io/one:v1",), two: ("quay.io/x/two:v2", "quay.io/x/two:v3")}
    merge_archives(merged, tags.items())
    assert _first_tags(merged) == [
        "registry.k8s.io/one:v1",
        "quay.io/x/two:v2",
        "quay.io/x/two:v3",
    ]
    assert _first_tags(one) == ["localhost/one:1"]  # a single image's archive, for contrast
    # A loader that reads manifest.json (docker, ctr) finds each image with its tags.
    loaded = engine.docker("load", "--input", str(merged))
    for tag in ("registry.k8s.io/one:v1", "quay.io/x/two:v2", "quay.io/x/two:v3"):
        assert f"Loaded image: {tag}" in loaded


@pytest.fixture(scope="module")
def image(engine: DockerEngine) -> str:
    """The node image, loaded from the cache or built (devkit.kindnode)."""
    return node_image(engine, progress=print)


def test_the_node_image_holds_every_image_it_names(engine: DockerEngine, image: str) -> None:
    # containerd of the image, started as kind's own build starts it, lists its images.
    listing = engine.docker(
        "run",
        "--rm",
        "--network=none",
        "--entrypoint=bash",
        image,
        "-c",
        "containerd >/dev/null 2>&1 & "
        "for i in $(seq 30); do ctr --namespace=k8s.io images list --quiet && exit; sleep 1; done; "
        "exit 1",
        timeout=120,
    ).split()
    wanted = {
        *kubeadm_images(),
        PAUSE_TAG,
        KINDNETD_TAG,
        LOCAL_PATH_PROVISIONER_TAG,
        LOCAL_PATH_HELPER_TAG,
    }
    assert wanted - set(listing) == set(), listing
    version = engine.docker(
        "run", "--rm", "--network=none", "--entrypoint=cat", image, "/kind/version"
    )
    assert version.strip() == kube_version()
    kubelet = engine.docker(
        "run", "--rm", "--network=none", "--entrypoint=/usr/bin/kubelet", image, "--version"
    )
    assert kubelet.split() == ["Kubernetes", kube_version()]


def test_a_nodes_resolver_is_its_gateway_not_dockers_embedded_one(
    engine: DockerEngine, image: str
) -> None:
    """On a network of its own (kind's) docker gives a container the resolver 127.0.0.11,
    which CoreDNS in the node's pods cannot reach: it forwarded there, found itself
    ("plugin/loop: Loop ... detected") and crash-looped. The entrypoint names the node's
    gateway instead (the host's address on the engine's bridge, where nothing answers)."""
    network = engine.create_network("resolver")
    try:
        resolv = engine.docker(
            "run",
            "--rm",
            "--privileged",
            f"--network={network.name}",
            "--entrypoint=/usr/local/bin/entrypoint",
            image,
            "cat",
            "/etc/resolv.conf",
            timeout=120,
        )
    finally:
        engine.docker("network", "rm", network.name)
        engine.networks.remove(network)
    assert [line for line in resolv.splitlines() if line.startswith("nameserver ")] == [
        f"nameserver {network.gateway}"
    ], resolv
