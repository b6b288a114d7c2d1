"""What gunicorn would run with, as gunicorn itself reads it, for ``manage.py check``.

gunicorn takes its settings from, in increasing precedence: ``WEB_CONCURRENCY`` (the default
of ``workers``), its config file (``-c``, else ``./gunicorn.conf.py``), ``GUNICORN_CMD_ARGS``
and its command line. :func:`read` runs gunicorn's own loading of all of them
(``gunicorn.app.base.Application.load_config``) in a process of its own, because a config
file is Python that may change the environment (the shop's sets
``PROMETHEUS_MULTIPROC_DIR``) and must not change the checking process.

The command line given to :func:`read` is the one of the process being checked when that is
gunicorn, else none: ``manage.py check`` cannot see a ``--workers`` given only to the
container's ``gunicorn`` command. The package's ``on_starting`` hook checks that case with
gunicorn's final settings when gunicorn starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HOOKS_MODULE = "jewelry_monitoring_django.gunicorn"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ConfigError(Exception):
    """gunicorn refused its configuration (the message is its own)."""


@dataclass(frozen=True)
class GunicornConfig:
    workers: int
    max_requests: int
    # PROMETHEUS_MULTIPROC_DIR as the workers get it (the config file or ``raw_env`` may set it)
    multiproc_dir: str | None
    child_exit: str  # module.qualname of the child_exit hook
    # The control socket's path (gunicorn >= 25.1), None if disabled or unknown to gunicorn.
    # The master creates its directory at start, by default under $HOME, which a read-only
    # root filesystem refuses.
    control_socket: str | None


def own_command_line() -> list[str]:
    """This process's arguments if it is gunicorn, else none."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    return sys.argv[1:] if program.startswith("gunicorn") else []


def read(
    argv: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> GunicornConfig:
    """gunicorn's settings for command line ``argv`` (default :func:`own_command_line`) in
    ``environ`` and ``cwd`` (default: this process's). Raises ConfigError if gunicorn fails."""
    result = subprocess.run(
        [sys.executable, "-m", __name__, json.dumps(own_command_line() if argv is None else argv)],
        env=dict(os.environ if environ is None else environ),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise ConfigError(lines[-1] if lines else f"exit status {result.returncode}")
    return GunicornConfig(**json.loads(result.stdout.splitlines()[-1]))


def _load(argv: list[str]) -> dict[str, Any]:
    """In the child process: load the configuration as ``gunicorn <argv>`` would."""
    from gunicorn.app.base import Application

    class Probe(Application):  # type: ignore[misc]
        def init(self, parser: Any, opts: Any, args: Any) -> None:
            return None

        def load(self) -> None:
            return None

    sys.argv = ["gunicorn", *argv]
    cfg = Probe().cfg
    hook = cfg.child_exit
    return {
        "workers": int(cfg.workers),
        "max_requests": int(cfg.max_requests),
        "multiproc_dir": {**os.environ, **cfg.env}.get(MULTIPROC_ENV) or None,
        "child_exit": f"{hook.__module__}.{hook.__qualname__}",
        "control_socket": (
            None
            if "control_socket" not in cfg.settings or cfg.control_socket_disable
            else cfg.control_socket
        ),
    }


if __name__ == "__main__":
    print(json.dumps(_load(json.loads(sys.argv[1]))))
