"""A PyPI index relay on a host address, for ``docker build`` steps that run ``pip``.

A build step runs in a container on the engine's bridge, and nothing may leave the machine
from there (devkit.dockerd drops it). PyPI is reached from this host only, through its own
configuration (``/etc/hosts`` and the CA bundle of its TLS-intercepting proxy, which must
never be copied into an image). So the build gets ``--build-arg PIP_INDEX_URL=<relay>``
(our Dockerfiles declare it, as a mirror setting for users) and this relay, listening on
the bridge's gateway address, answers it as PEP 503's simple index: a project page is
fetched from pypi.org and its file links rewritten to the relay; a file is fetched from
files.pythonhosted.org once and kept in the tool cache. It relays those two hosts only, and
GET only.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devkit.toolchain import cache_dir

INDEX = "https://pypi.org/simple/"
FILES = "https://files.pythonhosted.org/"
PROJECT_PAGE = re.compile(r"^/simple/([A-Za-z0-9._-]+)/$")
# packages/<hash path>/<file name>; a file name may hold an epoch ("1!10.1.0", quoted %21).
FILE_PATH = re.compile(r"^/files/((?:[A-Za-z0-9._+!-]+/)*[A-Za-z0-9._+!-]+)$")


def relay_cache() -> Path:
    return cache_dir() / "pypi-files"


class _Handler(BaseHTTPRequestHandler):
    server: _RelayServer

    def do_GET(self) -> None:
        path = urllib.parse.unquote(self.path.split("?", 1)[0].split("#", 1)[0])
        project, file = PROJECT_PAGE.match(path), FILE_PATH.match(path)
        try:
            if project:
                page = _fetch(f"{INDEX}{project[1]}/", accept="text/html").decode()
                body = page.replace(FILES, f"{self.server.url}files/").encode()
                self._send(body, "text/html; charset=utf-8")
            elif file and ".." not in file[1].split("/"):
                self._send(self.server.cached(file[1]).read_bytes(), "application/octet-stream")
            else:
                self.send_error(404, "not an index page or file")
        except urllib.error.HTTPError as error:
            self.send_error(error.code, str(error.reason))

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(format % args)


class _RelayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: str) -> None:
        super().__init__((address, 0), _Handler)
        self.url = f"http://{address}:{self.server_address[1]}/"
        self.requests: list[str] = []
        self.lock = threading.Lock()

    def cached(self, path: str) -> Path:
        """The file at ``path`` of files.pythonhosted.org, from the cache or fetched."""
        target = relay_cache() / path
        with self.lock:
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                # Another relay (another test session) may fetch the same file meanwhile.
                partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
                url = FILES + urllib.parse.quote(path)
                with (
                    urllib.request.urlopen(url, timeout=120) as response,
                    partial.open("wb") as output,
                ):
                    shutil.copyfileobj(response, output)
                partial.rename(target)
        return target


def _fetch(url: str, accept: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=60) as response:
        body: bytes = response.read()
        return body


@contextmanager
def pypi_relay(address: str) -> Iterator[str]:
    """A relay listening on ``address`` (a free port) for a block; yields its index URL."""
    server = _RelayServer(address)
    thread = threading.Thread(target=server.serve_forever, name="pypi-relay", daemon=True)
    thread.start()
    try:
        yield f"{server.url}simple/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
