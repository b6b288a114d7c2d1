"""Setup's package step installs for real without starting or stopping any service.

It used to run `service ... stop` for redis-server, postgresql, nginx and the exporters after
installing anything, stopping services the machine's owner was running. These tests install
and purge a small real package with an init script and check that the owner's redis-server
survives, that the package's own service does not start, and that the machine's own
policy-rc.d is back afterwards, when apt fails too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("debian-packages")
POLICY = Path("/usr/sbin/policy-rc.d")
# `at`: 159 kB, no dependencies beyond base, ships /etc/init.d/atd, which its postinst starts
# through invoke-rc.d; atd runs nothing unless someone queues a job.
PROBE_PACKAGE, PROBE_DAEMON = "at", "atd"
# The pidfile of Debian's redis-server service: `service redis-server stop` stops whatever
# redis-server this file names.
SERVICE_PIDFILE = Path("/run/redis/redis-server.pid")
ALLOW_ALL = (
    b"#!/bin/sh\n# jewelry-monitoring test: this machine allows every service start\nexit 0\n"
)


def _installed(package: str) -> bool:
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    ).stdout
    return "install ok installed" in status


def _redis_answers(unix_socket: Path) -> bool:
    reply = subprocess.run(
        ["redis-cli", "-s", str(unix_socket), "ping"], capture_output=True, text=True
    )
    return reply.stdout.strip() == "PONG"


@pytest.fixture
def owners_redis(tmp_path: Path) -> Iterator[Callable[[], bool]]:
    """A redis-server running as the machine's redis-server service: says if it still runs.

    Where that service really runs, it is the one watched; otherwise the test starts one with
    the service's pidfile, which is what `service redis-server stop` goes by, on a unix socket
    only (no TCP port another process could take first).
    """
    if SERVICE_PIDFILE.exists():
        pid = int(SERVICE_PIDFILE.read_text())
        assert Path(f"/proc/{pid}").exists(), f"stale {SERVICE_PIDFILE}"
        yield lambda: Path(f"/proc/{pid}").exists()
        return
    made_run_dir = not SERVICE_PIDFILE.parent.exists()
    SERVICE_PIDFILE.parent.mkdir(exist_ok=True)
    unix_socket = tmp_path / "redis.sock"
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(unix_socket), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--pidfile", str(SERVICE_PIDFILE)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (_redis_answers(unix_socket) and SERVICE_PIDFILE.exists()):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        yield lambda: _redis_answers(unix_socket)
    finally:
        server.terminate()
        server.wait(timeout=30)
        SERVICE_PIDFILE.unlink(missing_ok=True)
        if made_run_dir:
            SERVICE_PIDFILE.parent.rmdir()


@pytest.fixture
def permissive_machine() -> Iterator[bytes]:
    """The machine's policy-rc.d swapped for one that lets every service start.

    So only the script's own policy can keep a package's service from starting, and the test
    can see that the script puts the machine's policy back. The original returns afterwards.
    """
    original = POLICY.read_bytes() if POLICY.exists() else None
    mode = POLICY.stat().st_mode if POLICY.exists() else 0o755
    POLICY.write_bytes(ALLOW_ALL)
    POLICY.chmod(0o755)
    try:
        yield ALLOW_ALL
    finally:
        if original is None:
            POLICY.unlink(missing_ok=True)
        else:
            POLICY.write_bytes(original)
            POLICY.chmod(mode)


def _run_script(*packages: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *packages], capture_output=True, text=True, timeout=900
    )


def _daemon_running(name: str) -> bool:
    return subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0


@pytest.mark.timeout(900)
def test_installing_a_package_starts_nothing_and_stops_nothing(
    owners_redis: Callable[[], bool], permissive_machine: bytes
) -> None:
    assert shutil.which("apt-get") and os.geteuid() == 0, "needs Debian's apt and root"
    assert not _installed(PROBE_PACKAGE), f"{PROBE_PACKAGE} is installed: this test purges it"
    assert not _daemon_running(PROBE_DAEMON)
    try:
        result = _run_script(PROBE_PACKAGE)
        assert result.returncode == 0, result.stdout + result.stderr
        assert _installed(PROBE_PACKAGE)
        assert Path(f"/etc/init.d/{PROBE_DAEMON}").exists()
        assert owners_redis(), "the owner's redis-server was stopped"
        assert not _daemon_running(PROBE_DAEMON), "the new package's service was started"
        assert POLICY.read_bytes() == permissive_machine, "the machine's policy-rc.d was lost"
    finally:
        subprocess.run(
            ["apt-get", "purge", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", PROBE_PACKAGE],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            check=True,
        )
    assert not _installed(PROBE_PACKAGE)


@pytest.mark.timeout(900)
def test_a_failed_install_puts_the_machines_policy_back(permissive_machine: bytes) -> None:
    result = _run_script("jewelry-monitoring-no-such-package")
    assert result.returncode != 0
    assert "jewelry-monitoring-no-such-package" in result.stderr
    assert POLICY.read_bytes() == permissive_machine
    assert not list(POLICY.parent.glob("policy-rc.d.*")), "a temporary copy was left"


def test_nothing_is_done_when_every_package_is_installed() -> None:
    before = POLICY.read_bytes() if POLICY.exists() else None
    result = _run_script("bash", "coreutils")
    assert result.returncode == 0 and result.stdout == ""
    assert (POLICY.read_bytes() if POLICY.exists() else None) == before
