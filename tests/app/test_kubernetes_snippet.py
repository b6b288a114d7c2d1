"""The package README's Kubernetes snippet for multiprocess mode is what manifests/dev runs."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "app" / "jewelry-monitoring-django" / "README.md"
MANIFEST = REPO / "manifests" / "dev" / "app.yaml"
MARKER = "<!-- kubernetes-multiproc -->"


def readme_snippet() -> dict:  # type: ignore[type-arg]
    after = README.read_text().split(MARKER, 1)[1]
    block = after.split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)  # type: ignore[no-any-return]


def test_the_readme_snippet_is_what_the_dev_manifest_runs() -> None:
    snippet = readme_snippet()
    [wanted] = snippet["containers"]
    [deployment] = [
        d
        for d in yaml.safe_load_all(MANIFEST.read_text())
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "jewelry-shop"
    ]
    pod = deployment["spec"]["template"]["spec"]
    [web] = [c for c in pod["containers"] if c["name"] == wanted["name"]]
    for env in wanted["env"]:
        assert env in web["env"], env
    for mount in wanted["volumeMounts"]:
        assert mount in web["volumeMounts"], mount
    for volume in snippet["volumes"]:
        assert volume in pod["volumes"], volume
    assert web["securityContext"]["readOnlyRootFilesystem"] is True
    # The image's command runs the config file that imports the hooks.
    config = (REPO / "app" / "gunicorn.conf.py").read_text()
    assert "from jewelry_monitoring_django.gunicorn import child_exit, on_starting" in config
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py"]' in (REPO / "app" / "Dockerfile").read_text()
