"""Start real local service processes (PostgreSQL, Redis, Nginx) for tests.

Every launcher is a context manager that

* picks a free port on the loopback interface (and a fresh one when another process took it
  before the service could bind it: devkit.ports),
* creates a private temporary directory for data, sockets, pid and log files,
* starts the real Debian-packaged binary in the foreground (no daemonizing),
* waits until the service answers, yields a small frozen description of it,
* and on exit stops the process (SIGTERM, then SIGKILL) and deletes the directory.

Nothing is left behind: no processes, no files, no system-wide configuration changes.

Public API::

    free_port(host="127.0.0.1") -> int
    postgres_service(*, user, password, database, bindir, startup_timeout) -> PostgresService
    redis_service(*, startup_timeout) -> RedisService
    nginx_service(site, *, startup_timeout) -> NginxService  # site(port, status_port) -> conf
    ServiceError

PostgreSQL refuses to run as root. When the current user is root the server runs as the
``postgres`` system user (falling back to ``nobody``) and the temporary directory is
handed over to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devkit.ports import StartOutput, exited_during_start, start_on_fresh_ports
from devkit.ports import free_port as free_loopback_port

__all__ = [
    "NginxService",
    "PostgresService",
    "RedisService",
    "ServiceError",
    "free_port",
    "nginx_service",
    "postgres_service",
    "redis_service",
    "stop_process_group",
]

LOOPBACK = "127.0.0.1"
PG_BINDIR = Path("/usr/lib/postgresql/15/bin")


class ServiceError(RuntimeError):
    """A service could not be started; the message includes the tail of its log."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is currently free on ``host``.

    The port is released before returning, so another process could grab it in between: the
    launchers here start again on a fresh port when that happens (devkit.ports). On the IPv4
    loopback it lies outside the kernel's ephemeral range (devkit.ports.free_port), where no
    outgoing connection can take it meanwhile.
    """
    if host == "127.0.0.1":
        return free_loopback_port()
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _has_forked(pid: int) -> bool:
    """Whether process ``pid`` has a child (an nginx master its worker)."""
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return False


def stop_process_group(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15
) -> None:
    """Stop ``proc`` and everything in its process group (it runs in its own session):
    ``sig``, SIGKILL after ``timeout`` seconds, then SIGKILL to what is left of the group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    # Reap stragglers of the group (e.g. nginx workers) that outlived the leader.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_until(
    check: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    output: StartOutput,
    what: str,
    timeout: float,
) -> None:
    """Wait for ``check``; a process that exits first raises ServiceError, or PortTaken when
    its output says that another process took its port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise exited_during_start(what, output.text(), ServiceError)
        if check():
            return
        time.sleep(0.1)
    raise ServiceError(f"{what} did not become ready in {timeout}s:\n{output.tail()}")


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServiceError("running as root and neither 'postgres' nor 'nobody' exists")


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class PostgresService:
    """A running PostgreSQL server.

    ``user`` is a superuser with ``password`` (scram-sha-256 over TCP); ``database`` exists.
    """

    host: str
    port: int
    user: str
    password: str
    database: str
    datadir: Path
    socket_dir: Path
    bindir: Path
    run_as: str | None

    @property
    def dsn(self) -> str:
        """``postgresql://user:password@host:port/database`` for the default database."""
        return self.dsn_for(self.database)

    @property
    def url(self) -> str:
        """Alias of :attr:`dsn` (what ``DATABASE_URL`` expects)."""
        return self.dsn

    def dsn_for(self, database: str) -> str:
        """A DSN for another database on the same server."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def createdb(self, name: str) -> str:
        """Create database ``name`` (owned by :attr:`user`) and return its DSN."""
        self._client("createdb", name)
        return self.dsn_for(name)

    def dropdb(self, name: str) -> None:
        """Drop database ``name`` (forcefully disconnecting its sessions)."""
        self._client("dropdb", "--force", "--if-exists", name)

    def _client(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), "-h", str(self.socket_dir), "-p", str(self.port)]
        cmd += ["-U", self.user, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, user=self.run_as, timeout=60)
        if res.returncode != 0:
            raise ServiceError(f"{tool} {' '.join(args)} failed: {res.stderr.strip()}")


@contextlib.contextmanager
def postgres_service(
    *,
    user: str = "jewelry",
    password: str = "jewelry-test-password",
    database: str = "jewelry",
    bindir: Path = PG_BINDIR,
    startup_timeout: float = 60,
) -> Iterator[PostgresService]:
    """Run a throw-away PostgreSQL server on a free loopback port.

    Durability is switched off (``fsync=off``) because the data is discarded anyway.
    """
    account = _unprivileged_user()
    run_as = account.pw_name if account else None
    tmp = Path(tempfile.mkdtemp(prefix="devkit-pg-"))
    started: list[subprocess.Popen[bytes]] = []
    try:
        datadir, sockdir, log = tmp / "data", tmp / "run", tmp / "postgres.log"
        sockdir.mkdir()
        pwfile = tmp / "pwfile"
        pwfile.write_text(password + "\n")
        if account:
            for p in (tmp, sockdir, pwfile):
                os.chown(p, account.pw_uid, account.pw_gid)
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=run_as,
            cwd=tmp,
            timeout=120,
        )
        pwfile.unlink()

        def start(ports: list[int]) -> int:
            (port,) = ports
            output = StartOutput(log)
            with open(log, "ab") as logf:
                proc = subprocess.Popen(
                    [
                        str(bindir / "postgres"),
                        "-D",
                        str(datadir),
                        "-p",
                        str(port),
                        "-k",
                        str(sockdir),
                        "-c",
                        f"listen_addresses={LOOPBACK}",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=100",
                    ],
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    user=run_as,
                    cwd=tmp,
                    start_new_session=True,
                )
            started.append(proc)
            sock_file = sockdir / f".s.PGSQL.{port}"
            _wait_until(
                lambda: sock_file.exists() and _port_open(LOOPBACK, port),
                proc,
                output,
                "postgres",
                startup_timeout,
            )
            return port

        port = start_on_fresh_ports(start)
        svc = PostgresService(
            host=LOOPBACK,
            port=port,
            user=user,
            password=password,
            database=database,
            datadir=datadir,
            socket_dir=sockdir,
            bindir=bindir,
            run_as=run_as,
        )
        # The socket can appear a moment before connections are accepted.
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                svc.createdb(database)
                break
            except ServiceError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield svc
    finally:
        for proc in started:
            # SIGINT = "fast shutdown": disconnects clients, no checkpoint wait on SIGTERM.
            stop_process_group(proc, signal.SIGINT)
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- Redis


@dataclass(frozen=True)
class RedisService:
    """A running Redis server without persistence and without authentication."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        """URL of logical database ``db``."""
        return f"redis://{self.host}:{self.port}/{db}"

    def command(self, *args: str) -> bytes:
        """Send one command (inline protocol) and return the raw first reply line."""
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            s.sendall(f"*{len(args)}\r\n".encode())
            for a in args:
                b = a.encode()
                s.sendall(b"$%d\r\n%s\r\n" % (len(b), b))
            return s.makefile("rb").readline().rstrip(b"\r\n")


@contextlib.contextmanager
def redis_service(*, startup_timeout: float = 30) -> Iterator[RedisService]:
    """Run a throw-away ``redis-server`` on a free loopback port (no RDB/AOF files)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    tmp = Path(tempfile.mkdtemp(prefix="devkit-redis-"))
    started: list[subprocess.Popen[bytes]] = []
    try:
        conf, log = tmp / "redis.conf", tmp / "redis.log"

        def start(ports: list[int]) -> RedisService:
            (port,) = ports
            conf.write_text(
                "\n".join(
                    [
                        f"bind {LOOPBACK}",
                        f"port {port}",
                        "protected-mode yes",
                        "daemonize no",
                        f"dir {tmp}",
                        'save ""',
                        "appendonly no",
                        f"logfile {log}",
                        "databases 16",
                        "",
                    ]
                )
            )
            output = StartOutput(log)
            proc = subprocess.Popen(
                [binary, str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tmp,
                start_new_session=True,
            )
            started.append(proc)
            svc = RedisService(host=LOOPBACK, port=port)

            def ping() -> bool:
                with contextlib.suppress(OSError):
                    return svc.command("PING") == b"+PONG"
                return False

            _wait_until(ping, proc, output, "redis-server", startup_timeout)
            return svc

        yield start_on_fresh_ports(start)
    finally:
        for proc in started:
            stop_process_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- Nginx


@dataclass(frozen=True)
class NginxService:
    """A running nginx master process.

    ``port`` is the port the launcher waited for (the site's first), ``status_port`` the
    second port it gave the site; ``config_path`` is the generated top-level nginx.conf,
    ``prefix`` its directory.
    """

    host: str
    port: int
    status_port: int
    prefix: Path
    config_path: Path

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"


@contextlib.contextmanager
def nginx_service(
    site: Callable[[int, int], str], *, startup_timeout: float = 30
) -> Iterator[NginxService]:
    """Run nginx with ``site(port, status_port)`` placed inside its ``http {}`` block.

    ``site`` returns ``upstream``/``server`` blocks (what goes in ``conf.d/*.conf``) that
    ``listen`` on ``127.0.0.1:<port>`` (and, if they need a second one, on
    ``127.0.0.1:<status_port>``); both are free ports, fresh ones when another process took
    one first. The launcher supplies everything else: pid file, logs and temp paths inside a
    private prefix, ``daemon off`` and one worker process.
    """
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    tmp = Path(tempfile.mkdtemp(prefix="devkit-nginx-"))
    started: list[subprocess.Popen[bytes]] = []
    try:
        (tmp / "logs").mkdir()
        (tmp / "conf.d").mkdir()
        temp_dirs = "\n".join(
            f"    {name}_temp_path {tmp / 'temp' / name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user_line = "user nobody nogroup;" if os.geteuid() == 0 else ""
        conf = tmp / "nginx.conf"
        log = tmp / "logs" / "error.log"
        conf.write_text(
            f"""{user_line}
daemon off;
master_process on;
worker_processes 1;
pid {tmp / "nginx.pid"};
error_log {log} info;
events {{ worker_connections 256; }}
http {{
    access_log {tmp / "logs" / "access.log"};
{temp_dirs}
    include {tmp / "conf.d"}/*.conf;
}}
"""
        )
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            d = tmp / "temp" / name
            d.mkdir(parents=True)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.chown(d, nobody.pw_uid, nobody.pw_gid)
        if os.geteuid() == 0:
            os.chmod(tmp, 0o755)

        def start(ports: list[int]) -> NginxService:
            port, status_port = ports
            (tmp / "conf.d" / "site.conf").write_text(site(port, status_port))
            check = subprocess.run(
                [binary, "-t", "-p", str(tmp), "-c", str(conf)], capture_output=True, text=True
            )
            if check.returncode != 0:
                raise ServiceError(f"nginx config test failed:\n{check.stderr}")
            output = StartOutput(log)
            # Its output goes to its error log too: a bind that fails before the log is open
            # is reported there.
            with open(log, "ab") as errors:
                proc = subprocess.Popen(
                    [binary, "-p", str(tmp), "-c", str(conf)],
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    cwd=tmp,
                    start_new_session=True,
                )
            started.append(proc)
            # nginx forks its worker once it holds its ports: until then whatever answers on
            # the port may be the process that took it.
            _wait_until(
                lambda: _has_forked(proc.pid) and _port_open(LOOPBACK, port),
                proc,
                output,
                "nginx",
                startup_timeout,
            )
            return NginxService(
                host=LOOPBACK, port=port, status_port=status_port, prefix=tmp, config_path=conf
            )

        yield start_on_fresh_ports(start, count=2)
    finally:
        for proc in started:
            stop_process_group(proc, signal.SIGQUIT)
        shutil.rmtree(tmp, ignore_errors=True)
