"""devkit.bounded_runc: a container's capabilities cut to the bounding set of the runtime's
own process, so that a privileged container (a kind node) starts where root lacks some."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devkit.bounded_runc import CAPABILITIES, bound_process, bounding_set, main


def test_the_bounding_set_is_read_from_its_bit_mask() -> None:
    # This machine's: every capability up to CAP_CHECKPOINT_RESTORE but CAP_SYS_RESOURCE.
    allowed = bounding_set("Name:\tx\nCapBnd:\t000001fffeffffff\n")
    assert set(CAPABILITIES) - allowed == {"CAP_SYS_RESOURCE"}
    assert bounding_set("CapBnd:\t0000000000000001\n") == {"CAP_CHOWN"}


def test_every_capability_set_of_a_process_is_cut() -> None:
    process: dict[str, object] = {
        "capabilities": {
            kind: ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"]
            for kind in ("bounding", "effective", "permitted")
        }
    }
    assert bound_process(process, {"CAP_CHOWN", "CAP_SYS_ADMIN"})
    assert process["capabilities"] == {
        kind: ["CAP_CHOWN", "CAP_SYS_ADMIN"] for kind in ("bounding", "effective", "permitted")
    }
    assert not bound_process(process, {"CAP_CHOWN", "CAP_SYS_ADMIN"})  # nothing left to cut


def test_a_bundle_is_rewritten_before_runc_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``create --bundle`` (a container) and ``exec --process`` (docker exec) both; runc
    then runs with the same arguments."""
    status = Path("/proc/self/status").read_text()
    missing = sorted(set(CAPABILITIES) - bounding_set(status)) or ["CAP_NOT_A_CAPABILITY"]
    everything = [*CAPABILITIES, *missing]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(
        json.dumps({"process": {"capabilities": {"bounding": everything}}, "ociVersion": "1"})
    )
    process_file = tmp_path / "process.json"
    process_file.write_text(json.dumps({"capabilities": {"effective": everything}}))
    executed: list[list[str]] = []
    monkeypatch.setattr("os.execv", lambda path, argv: executed.append(argv))

    main(["--root", "/run/x", "create", "--bundle", str(bundle), "c1"])
    main(["exec", "--process", str(process_file), "c1"])

    config = json.loads((bundle / "config.json").read_text())
    assert not set(missing) & set(config["process"]["capabilities"]["bounding"])
    assert config["ociVersion"] == "1"
    exec_process = json.loads(process_file.read_text())
    assert not set(missing) & set(exec_process["capabilities"]["effective"])
    assert [argv[1:] for argv in executed] == [
        ["--root", "/run/x", "create", "--bundle", str(bundle), "c1"],
        ["exec", "--process", str(process_file), "c1"],
    ]
