"""The benchmark's reading of the audit log follows the API server's rotation of it.

kube-apiserver rotates its audit log at 100 MB unless told otherwise (lumberjack's default
for ``--audit-log-maxsize=0``): the old file is renamed and a new one begins. At 1,000 CRs the
log passed that size during the just-started phase, and the bench read 0 requests for it.
"""

from __future__ import annotations

import json
from pathlib import Path

from devkit.bench import USER, AuditTail


def _line(audit_id: str, user: str = USER, verb: str = "patch") -> str:
    entry = {
        "auditID": audit_id,
        "verb": verb,
        "user": {"username": user},
        "objectRef": {"resource": "services"},
        "requestURI": "/api/v1/services",
    }
    return json.dumps(entry) + "\n"


def _rotate(log: Path) -> None:
    """As lumberjack does: the full file renamed aside, a new one at the path."""
    log.rename(log.with_name("audit-2026-12-07T18-40-00.000.log"))
    log.write_text("")


def test_requests_logged_around_a_rotation_are_all_read(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(_line("before-the-tail"))
    tail = AuditTail(log)
    with log.open("a") as old:
        old.write(_line("a"))
        old.write(_line("b")[:20])  # a line still being written
    assert [r["auditID"] for r in tail.read()] == ["a"]
    with log.open("a") as old:
        old.write(_line("b")[20:])
    _rotate(log)
    with log.open("a") as new:
        new.write(_line("c"))
        new.write(_line("d", user="system:kube-controller-manager", verb="create"))
    assert [r["auditID"] for r in tail.read()] == ["b", "c"]
    assert tail.others == {"kube-controller-manager: create services": 1}


def test_a_skip_across_a_rotation_forgets_everything_before_it(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text("")
    tail = AuditTail(log)
    log.write_text(_line("old"))
    _rotate(log)
    with log.open("a") as new:
        new.write(_line("skipped"))
    tail.skip()
    with log.open("a") as new:
        new.write(_line("after"))
    assert [r["auditID"] for r in tail.read()] == ["after"]
