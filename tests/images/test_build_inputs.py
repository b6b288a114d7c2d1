"""What an image's content hash covers: the build context as buildah sends it (.dockerignore
applied), so an image is rebuilt exactly when something it copies changes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devkit import images as img


def _git_context(root: Path, files: dict[str, str], dockerignore: str) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".dockerignore").write_text(dockerignore)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _names(context: Path) -> set[str]:
    return {str(p.relative_to(context)) for p in img.context_files(context)}


def test_context_is_what_dockerignore_lets_through(tmp_path: Path) -> None:
    """The operator's pattern: exclude all, re-include a few paths, drop bytecode anywhere."""
    context = _git_context(
        tmp_path,
        {
            "pyproject.toml": "",
            "README.md": "",
            "app/manage.py": "",
            "operator/Dockerfile": "",
            "operator/pkg/__init__.py": "",
            "operator/pkg/__pycache__/x.cpython-311.pyc": "",
            "operator/pkg/sub/mod.py": "",
        },
        "*\n!pyproject.toml\n!README.md\n!operator/pkg\n**/__pycache__\n",
    )
    assert _names(context) == {
        "pyproject.toml",
        "README.md",
        "operator/pkg/__init__.py",
        "operator/pkg/sub/mod.py",
    }


def test_gitignored_files_are_not_hashed(tmp_path: Path) -> None:
    context = _git_context(tmp_path, {"a.py": "", ".venv/bin/python": ""}, "")
    (context / ".gitignore").write_text(".venv/\n")
    assert _names(context) == {"a.py", ".gitignore", ".dockerignore"}


def test_the_hash_changes_with_a_copied_file_only(tmp_path: Path) -> None:
    context = _git_context(tmp_path, {"kept.py": "1", "ignored.txt": "1"}, "ignored.txt\n")

    def digest() -> list[bytes | str]:
        return img.files_digest(img.context_files(context), context)

    before = digest()
    (context / "ignored.txt").write_text("2")
    assert digest() == before
    (context / "kept.py").write_text("2")
    assert digest() != before


def test_the_operator_context_holds_its_distribution_and_not_the_app() -> None:
    names = _names(img.REPO)
    distribution = {"LICENSE", "operator/pyproject.toml", "operator/requirements.lock"}
    assert {*distribution, "operator/jewelry_monitoring/__init__.py"} <= names
    assert all(n in distribution or n.startswith("operator/jewelry_monitoring/") for n in names), (
        sorted(names)
    )


def test_the_shop_context_holds_the_django_integration() -> None:
    """app/Dockerfile pip-installs app/jewelry-monitoring-django: a change to the package
    must change the shop image's hash (and rebuild it)."""
    shop = img.REPO / "app"
    names = _names(shop)
    package = "jewelry-monitoring-django"
    assert {f"{package}/pyproject.toml", f"{package}/jewelry_monitoring_django/access.py"} <= names
    assert "jewelry_shop/settings.py" in names
