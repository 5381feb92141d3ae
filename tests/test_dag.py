"""End to end: the real DVC pipeline on a tiny built-in dataset, in a fresh repo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Small enough for the whole DAG to run in about a minute on 2 cores.
TINY = {
    "synthetic": {"train_videos": 2, "val_videos": 1, "seconds": 8},
    "pretrain": {"epochs": 1},
    "train": {"epochs": 2},
}


def _run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def _set_params(project: Path, overrides: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in overrides.items():
        if isinstance(values, dict) and section in params:
            params[section].update(values)
        else:
            params[section] = values
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _stages_in(dvc_yaml: Path) -> list[str]:
    return list(yaml.safe_load(dvc_yaml.read_text())["stages"])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh git + DVC repo holding the pipeline's definition, run once."""
    root = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    for name in ("stages", "pipeline"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    known = set(yaml.safe_load((root / "params.yaml").read_text()))
    _set_params(root, {k: v for k, v in TINY.items() if k in known})
    _run(["git", "init", "-q"], root)
    _run(["dvc", "init", "-q"], root)
    _run(["dvc", "repro"], root)
    return root


def test_repro_writes_every_stage_output(project):
    for stage, spec in yaml.safe_load((project / "dvc.yaml").read_text())["stages"].items():
        for out in spec.get("outs", []):
            path = out if isinstance(out, str) else next(iter(out))
            assert (project / path).exists(), f"stage {stage} did not write {path}"


def test_second_repro_does_nothing(project):
    out = _run(["dvc", "repro"], project)
    assert "didn't change, skipping" in out or "Data and pipelines are up to date" in out
    for stage in _stages_in(project / "dvc.yaml"):
        assert f"Running stage '{stage}'" not in out


def test_changing_detect_source_reruns_detect_and_downstream_only(project):
    _set_params(project, {"detect": {"jitter": 0.02}})
    status = _run(["dvc", "status"], project)
    stages = _stages_in(project / "dvc.yaml")
    changed = {s for s in stages if f"{s}:" in status.split()}
    assert "detect" in changed and "prepare" not in changed
    out = _run(["dvc", "repro"], project)
    ran = {s for s in stages if f"Running stage '{s}'" in out}
    assert "prepare" not in ran
    assert {"detect", "pose", "parts"} <= ran
