"""The documents: each link resolves, CI runs what the README tells a user to run, and no
document names another that is not in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CONTRIBUTING = REPO / "CONTRIBUTING.md"
CI_RUN = REPO / ".ci" / "run"
# Every document of the repository (Markdown), the generated ones included.
DOCUMENTS = sorted(
    {
        README,
        CONTRIBUTING,
        REPO / "CHANGELOG.md",
        REPO / "SECURITY.md",
        *(REPO / "charts").glob("**/*.md"),
        *(REPO / "app").glob("**/*.md"),
    }
)
# The repository's address, as the chart gives it (Chart.yaml home and sources).
REPOSITORY_URL = yaml.safe_load((REPO / "charts/jewelry-monitoring/Chart.yaml").read_text())["home"]
# A Markdown link: [text](target), the target without a title.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def tracked_files() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return set(listed.stdout.splitlines())


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    text = FENCE.sub("", document.read_text())
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def links(document: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", document.read_text()))


def commands(document: Path, heading: str) -> list[str]:
    """The lines of the first ```bash block under ``heading``."""
    text = document.read_text()
    section = text[text.index(f"\n## {heading}\n") :]
    block = re.search(r"^```bash\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert block, f"{document.name}: no bash block under '## {heading}'"
    return block.group(1).strip().splitlines()


def local_target(document: Path, target: str) -> tuple[Path, str] | None:
    """The file or directory of this checkout a link of ``document`` points at, and its
    anchor: a relative link, or one to the repository's own address on its main branch. None
    for a link elsewhere (https:, mailto:: not checked offline)."""
    for kind in ("blob", "tree"):
        prefix = f"{REPOSITORY_URL}/{kind}/main/"
        if target.startswith(prefix):
            path, _, anchor = target.removeprefix(prefix).partition("#")
            return REPO / path, anchor
    if re.match(r"^[a-z]+:", target):
        return None
    path, _, anchor = target.partition("#")
    return ((document.parent / path).resolve() if path else document), anchor


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves(document: Path) -> None:
    files = tracked_files()
    broken = []
    for target in links(document):
        local = local_target(document, target)
        if local is None:
            continue
        resolved, anchor = local
        relative = str(resolved.relative_to(REPO))
        is_dir = any(f.startswith(relative + "/") for f in files)
        if resolved != document and relative not in files and not is_dir:
            broken.append(f"{target}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor in {relative}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_document_is_in_the_repository(document: Path) -> None:
    """A document named in `code` (a path, or a bare file name) exists: nothing points a
    reader at a file they cannot open."""
    files = tracked_files()
    names = {Path(f).name for f in files}
    missing = [
        named
        for named in re.findall(r"`([\w./-]+\.md)`", document.read_text())
        if (named not in files if "/" in named else named not in names)
    ]
    assert not missing, f"{document.name} names documents that are not in the repository: {missing}"


def test_readme_contents_lists_every_section() -> None:
    text = FENCE.sub("", README.read_text())
    contents = text[text.index("\n## Contents\n") :].split("\n## ", 2)[1]
    listed = {target.lstrip("#") for target in LINK.findall(contents) if target.startswith("#")}
    sections = {slug(h) for h in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)}
    unlisted = sections - listed - {"contents", "try-it"}
    assert not unlisted, f"README's Contents does not list the sections {sorted(unlisted)}"


def test_ci_runs_the_readme_commands_exactly_as_written() -> None:
    ci = CI_RUN.read_text().splitlines()
    readme = commands(README, "Try it")
    assert readme == commands(CONTRIBUTING, "Set up, run, test")
    assert any("tests/check" in line for line in readme), readme
    assert [line for line in readme if line not in ci] == [], ".ci/run must run them verbatim"
    # The first line a reader would take for "the test command" (as the session hook picks it).
    pattern = r"^\s*(make|\./|bash|python|pytest|uv|tox|nox|scripts/)[^#]*test"
    first = next(line for line in README.read_text().splitlines() if re.match(pattern, line))
    assert first.strip() in ci


def test_changelog_keeps_an_unreleased_section_first() -> None:
    headings = re.findall(r"^## (.+)$", (REPO / "CHANGELOG.md").read_text(), flags=re.MULTILINE)
    assert headings[0] == "[Unreleased]"
    released = [
        h for h in headings[1:] if not re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", h)
    ]
    assert not released, f"CHANGELOG headings must be '[X.Y.Z] - YYYY-MM-DD': {released}"


def test_crd_reference_is_generated_from_the_model() -> None:
    from devkit.crd_reference import CRD_REFERENCE, render_crd_reference

    committed = CRD_REFERENCE.read_text() if CRD_REFERENCE.exists() else ""
    assert committed == render_crd_reference(), (
        f"{CRD_REFERENCE.relative_to(REPO)} is stale: regenerate it with `.venv/bin/jm-dev "
        "manifests` and commit it"
    )


def test_chart_readme_lists_every_value_and_links_absolutely() -> None:
    """The chart's README is generated: its values table from values.yaml, and its links
    absolute to the repository (Artifact Hub shows the README away from it, where a relative
    link leads nowhere)."""
    from devkit.chart_readme import CHART_README, VALUES, render_chart_readme, undescribed

    values = VALUES.read_text()
    assert undescribed(values) == [], "describe them with a comment in values.yaml"
    committed = CHART_README.read_text()
    assert committed == render_chart_readme(committed, values), (
        f"the values table or a link of {CHART_README.relative_to(REPO)} is stale: regenerate "
        "it with `.venv/bin/jm-dev manifests` and commit it"
    )
    outside = [t for t in links(CHART_README) if not t.startswith(("#", REPOSITORY_URL + "/"))]
    assert not outside, f"links that lead nowhere on Artifact Hub: {outside}"


def test_chart_metadata_points_at_the_repository_and_its_icon() -> None:
    chart = yaml.safe_load((REPO / "charts/jewelry-monitoring/Chart.yaml").read_text())
    home = chart["home"]
    assert chart["sources"] == [home]
    assert chart["maintainers"]
    raw = home.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    assert chart["icon"].startswith(raw)
    assert chart["icon"].removeprefix(raw) in tracked_files()
