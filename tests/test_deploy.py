"""The KubeRay manifest runs what the README's cluster recipe runs, on storage every pod shares."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "rayjob.yaml"


def readme_job_command() -> list[str]:
    """The command after `--` in the README's `ray job submit` recipe (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^ray job submit .*?(?<!\\)\n", text.replace("\\\n", " "), flags=re.M)
    assert match, "README.md has no `ray job submit` recipe"
    words = shlex.split(match.group(0))
    return words[words.index("--") + 1:]


def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def pods(spec: dict) -> list[dict]:
    cluster = spec["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]


def test_manifest_entrypoint_is_the_readme_command():
    job = manifest()
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert shlex.split(job["spec"]["entrypoint"]) == readme_job_command()


def test_manifest_matches_the_installed_ray_and_one_image():
    spec = manifest()["spec"]
    assert spec["rayClusterSpec"]["rayVersion"] == ray.__version__
    images = {c["image"] for pod in pods(spec) for c in pod["containers"]}
    assert len(images) == 1, f"head and workers run different images: {images}"
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"COPY --chown=ray:users . {runtime_env['working_dir']}" in dockerfile
    assert f"rayproject/ray:{ray.__version__}-py311" in dockerfile
    assert "torch==2.13.0" in dockerfile and "JEPA_GIT_SHA" in dockerfile


def test_every_pod_mounts_the_storage_the_sweep_writes_to():
    spec = manifest()["spec"]
    words = shlex.split(spec["entrypoint"])
    storage = words[words.index("--storage") + 1]
    for pod in pods(spec):
        volumes = {v["name"] for v in pod["volumes"]}
        mounts = [m for c in pod["containers"] for m in c.get("volumeMounts", [])
                  if storage.startswith(m["mountPath"].rstrip("/") + "/") and m["name"] in volumes]
        assert mounts, f"a pod does not mount the sweep's storage {storage}"


def test_the_entrypoint_sweep_file_validates(tmp_path):
    from orchestrator.sweep import load_sweep

    words = shlex.split(manifest()["spec"]["entrypoint"])
    assert words[:2] == ["jepa", "sweep"]
    sweep = load_sweep(ROOT / words[2], [f"storage={tmp_path}"])
    assert sweep.grid_size >= 1
