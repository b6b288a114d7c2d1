"""Images for the node without a registry: docker-archive tarballs written here.

The programs the node needs for itself (pause, its sandboxes' process) and for its tests (the
probe, an HTTP server and client) are static binaries, so their images are one layer of
them plus a config. containerd imports an archive by name (devkit.node.containerd).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path

from devkit.toolchain import binary

PAUSE_IMAGE = "localhost/jm/pause:1"
PROBE_IMAGE = "localhost/jm/probe:1"


def write_image_archive(
    destination: Path,
    reference: str,
    files: Mapping[str, Path],
    entrypoint: list[str],
) -> Path:
    """A docker-archive tarball of one layer holding ``files`` (path in image -> host file).

    No base image: the programs the node needs for itself (pause) and for its tests (the
    probe) are static binaries, so an image is just them plus a config.
    """
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w") as layer:
        for name, source in sorted(files.items()):
            info = layer.gettarinfo(str(source), arcname=name.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            with source.open("rb") as handle:
                layer.addfile(info, handle)
    layer_bytes = layer_buffer.getvalue()
    layer_digest = hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created_by": "devkit.node.write_image_archive"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = [
        {"Config": config_name, "RepoTags": [reference], "Layers": [f"{layer_digest}/layer.tar"]}
    ]
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(destination, mode="w") as archive:
        for name, data in (
            (f"{layer_digest}/layer.tar", layer_bytes),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return destination


def archive_identity(archive: Path) -> tuple[list[str], str]:
    """A docker-archive's references and its image config's digest (the config names every
    layer by digest, so the same digest is the same image content)."""
    with tarfile.open(archive) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None, f"{archive} has no manifest.json"
        (manifest,) = json.load(manifest_file)
    return list(manifest["RepoTags"]), str(manifest["Config"]).removesuffix(".json")


def pause_image_archive(directory: Path) -> Path:
    """The sandbox image every pod's network namespace is held by: ``jm-pause``."""
    return write_image_archive(
        directory / "pause.tar", PAUSE_IMAGE, {"pause": binary("jm-pause")}, ["/pause"]
    )


def probe_image_archive(directory: Path) -> Path:
    """The node tests' image: ``jm-probe`` (an HTTP server and client) and nothing else."""
    return write_image_archive(
        directory / "probe.tar", PROBE_IMAGE, {"jm-probe": binary("jm-probe")}, ["/jm-probe"]
    )
