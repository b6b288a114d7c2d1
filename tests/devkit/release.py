"""What the release workflow (.github/workflows/release.yaml) decides, in one tested place.

It runs on a GitHub runner before anything is installed, so it uses the standard library
only and is run as a script:

    python3 tests/devkit/release.py version v0.2.0
        prints ``version=0.2.0`` (for $GITHUB_OUTPUT) when the tag, the chart's version and
        appVersion and every distribution's version agree; otherwise says which differ, exit 1
    python3 tests/devkit/release.py chart-image ghcr.io/<owner>/jewelry-monitoring-operator
        points the chart's default operator image at the registry the images were pushed to
        (the chart in git names the project's own; a fork publishes its own)
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "jewelry-monitoring"
DISTRIBUTIONS = (REPO / "operator", REPO / "app")
OPERATOR_IMAGE = "jewelry-monitoring-operator"
SHOP_IMAGE = "jewelry-shop"
# The image.repository line of values.yaml (the first "repository:" under "image:").
_IMAGE_REPOSITORY = re.compile(r"^(image:\n(?:[ \t]*#.*\n)*[ \t]+repository:[ \t]*)(\S+)", re.M)


class ReleaseError(ValueError):
    """The repository cannot be released as asked; the message says why."""


def _chart_field(name: str) -> str:
    found = re.search(
        rf"^{name}:[ \t]*\"?([^\"\s]+)\"?[ \t]*$", (CHART / "Chart.yaml").read_text(), re.M
    )
    if not found:
        raise ReleaseError(f"Chart.yaml has no {name}")
    return found[1]


def release_version(tag: str) -> str:
    """The version a tag ``vX.Y.Z`` releases, once everything that carries it agrees."""
    found = re.fullmatch(r"v(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)", tag)
    if not found:
        raise ReleaseError(f"tag {tag!r} is not v<major>.<minor>.<patch>")
    version = found[1]
    carriers = {
        "Chart.yaml version": _chart_field("version"),
        "Chart.yaml appVersion": _chart_field("appVersion"),
    }
    for directory in DISTRIBUTIONS:
        project = tomllib.loads((directory / "pyproject.toml").read_text())["project"]
        carriers[f"{directory.name}/pyproject.toml"] = project["version"]
    differing = {where: value for where, value in carriers.items() if value != version}
    if differing:
        raise ReleaseError(f"tag {tag} releases {version}, but {differing}")
    return version


def set_chart_image(repository: str, values: Path = CHART / "values.yaml") -> None:
    """Make ``repository`` the chart's default operator image (its tag stays appVersion)."""
    if repository.rpartition("/")[2] != OPERATOR_IMAGE:
        raise ReleaseError(f"{repository} is not a {OPERATOR_IMAGE} repository")
    text, count = _IMAGE_REPOSITORY.subn(rf"\g<1>{repository}", values.read_text(), count=1)
    if count != 1:
        raise ReleaseError(f"{values} has no image.repository to set")
    values.write_text(text)


def main(argv: list[str]) -> int:
    try:
        match argv:
            case ["version", tag]:
                print(f"version={release_version(tag)}")
            case ["chart-image", repository]:
                set_chart_image(repository)
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
