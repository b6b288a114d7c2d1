"""The repository's Python distributions, each with its own pyproject: the operator
(operator/, what the operator image installs), the Django /metrics integration
(app/jewelry-monitoring-django/, what a user's Django app installs), the demo shop (app/,
which depends on the integration as any user's app would) and the development
workspace (the root: jm-dev and the test tools, never published nor put in an image).

Checked from the sources, without building: what each distribution's code imports is what
it declares (an undeclared import crashes the image at start, a declared but unused one
bloats it), its console scripts point into its own packages, and every one of them carries
the Apache-2.0 licence. tests/images checks the built operator image itself.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
OPERATOR, SHOP = REPO / "operator", REPO / "app"
DJANGO_INTEGRATION = SHOP / "jewelry-monitoring-django"
# What a user's Django app gets with the integration: nothing of the shop's stack.
DJANGO_INTEGRATION_DEPENDENCIES = {"django", "django-prometheus", "prometheus-client"}
CHART = REPO / "charts" / "jewelry-monitoring" / "Chart.yaml"
# What the operator may depend on, and nothing else: no Django, no developer tooling.
OPERATOR_DEPENDENCIES = {
    "kopf",
    "pydantic",
    "pyyaml",
    "grafana-foundation-sdk",
    "prometheus-client",
    "urllib3",  # kube.py's transport
}


def pyproject(directory: Path) -> dict[str, Any]:
    return tomllib.loads((directory / "pyproject.toml").read_text())


def normalized(requirement: str) -> str:
    """The distribution name of a requirement, normalised as PEP 503 does."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name[0]).lower()


def declared(directory: Path, extras: bool = False) -> set[str]:
    """What the distribution requires; with ``extras``, its optional dependencies too."""
    project = pyproject(directory)["project"]
    requirements = list(project["dependencies"])
    if extras:
        requirements += [
            r for group in project.get("optional-dependencies", {}).values() for r in group
        ]
    return {normalized(r) for r in requirements}


def package_roots(directory: Path) -> list[Path]:
    """The top-level packages a distribution ships (setuptools' find with include)."""
    find = pyproject(directory)["tool"]["setuptools"]["packages"]["find"]
    roots = [directory / where for where in find.get("where", ["."])]
    patterns = [p.removesuffix("*") for p in find["include"]]
    return [
        package
        for root in roots
        for package in sorted(root.iterdir())
        if (package / "__init__.py").exists() and package.name in patterns
    ]


def imported_top_levels(package: Path) -> set[str]:
    """Top-level modules the package's code imports (absolute imports only)."""
    found: set[str] = set()
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def third_party_distributions(directory: Path) -> set[str]:
    """The distributions (installed in this virtualenv) that provide what the code of the
    distribution in ``directory`` imports, besides the standard library and itself."""
    providers = importlib.metadata.packages_distributions()
    own = {package.name for package in package_roots(directory)}
    distributions = set()
    for module in set().union(*map(imported_top_levels, package_roots(directory))):
        if module in sys.stdlib_module_names or module == "__future__" or module in own:
            continue
        assert module in providers, f"{module} is imported but no installed distribution has it"
        provided_by = {normalized(name) for name in providers[module]}
        # A namespace package (opentelemetry) comes from many distributions: the declared
        # ones are what provides the parts imported.
        distributions |= (provided_by & declared(directory, extras=True)) or provided_by
    return distributions


def test_the_operator_depends_on_what_it_runs_and_nothing_else() -> None:
    assert declared(OPERATOR) == OPERATOR_DEPENDENCIES
    assert third_party_distributions(OPERATOR) == OPERATOR_DEPENDENCIES


def test_the_django_integration_depends_on_django_and_django_prometheus_only() -> None:
    """gunicorn only as an extra, for its hooks (jewelry_monitoring_django.gunicorn)."""
    assert declared(DJANGO_INTEGRATION) == DJANGO_INTEGRATION_DEPENDENCIES
    assert declared(DJANGO_INTEGRATION, extras=True) == {
        *DJANGO_INTEGRATION_DEPENDENCIES,
        "gunicorn",
    }
    assert third_party_distributions(DJANGO_INTEGRATION) <= declared(
        DJANGO_INTEGRATION, extras=True
    )


def test_the_shop_declares_everything_it_imports() -> None:
    undeclared = third_party_distributions(SHOP) - declared(SHOP, extras=True)
    assert not undeclared, f"the shop imports {undeclared} without declaring them"


def test_the_workspace_installs_the_distributions_it_develops() -> None:
    """One .venv for everything (tests/toolchain/setup): the root requires the operator and
    the shop by name, the shop requires the integration, setup installs each from its
    directory."""
    names = {pyproject(d)["project"]["name"] for d in (OPERATOR, SHOP)}
    assert names <= declared(REPO)
    assert pyproject(DJANGO_INTEGRATION)["project"]["name"] in declared(SHOP)
    setup = (REPO / "tests" / "toolchain" / "setup").read_text()
    listed = re.search(r"^local_distributions=\((.*)\)$", setup, re.MULTILINE)
    assert listed and set(listed[1].split()) == {
        "operator",
        "app/jewelry-monitoring-django",
        "app",
        ".",
    }


@pytest.mark.parametrize("directory", [OPERATOR, SHOP, REPO], ids=["operator", "shop", "dev"])
def test_console_scripts_point_into_the_distributions_own_packages(directory: Path) -> None:
    """An entry point whose module another distribution ships is broken where only this one
    is installed (the operator image once had a ``jm-dev`` that could not import)."""
    scripts = pyproject(directory)["project"].get("scripts", {})
    roots = {package.name: package for package in package_roots(directory)}
    for script, target in scripts.items():
        module, _, function = target.partition(":")
        top, *rest = module.split(".")
        assert top in roots, f"{script}: {module} is not in this distribution"
        source = roots[top].joinpath(*rest).with_suffix(".py")
        tree = ast.parse(source.read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert function in defined, f"{script}: {source} defines no {function}()"


@pytest.mark.parametrize(
    "directory",
    [OPERATOR, DJANGO_INTEGRATION, SHOP, REPO],
    ids=["operator", "django-integration", "shop", "dev"],
)
def test_every_distribution_is_apache_2_licensed(directory: Path) -> None:
    assert pyproject(directory)["project"]["license"] == "Apache-2.0"


def test_the_license_file_and_the_charts_licence_annotations() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    annotations = yaml.safe_load(CHART.read_text())["annotations"]
    assert annotations["artifacthub.io/license"] == "Apache-2.0"
    assert annotations["org.opencontainers.image.licenses"] == "Apache-2.0"
