"""Stage outputs on a tiny built-in project: params are checked before anything
is replaced, outputs are replaced whole by one writer at a time, and each
carries the params that made it, so that a later stage refuses a stale one."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_outputs import hold_lock

from avapipe.features.backbone import build_slowfast
from avapipe.models.predict import load_classifier
from avapipe.outputs import OutputLockedError
from avapipe.provenance import ProvenanceError
from stages import detect, evaluate, features, memory, parts, pose, prepare, train
from stages.params import ParamsError, load_params

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = Path("models/classifier")
TINY = {"synthetic": {"train_videos": 2, "val_videos": 1, "seconds": 8}, "train": {"epochs": 3}}


def write_params(project: Path, name: str, overrides: dict, base: Path | None = None) -> Path:
    """``base`` (default: the project's own params) with ``overrides``, as ``name``."""
    params = yaml.safe_load((base or project / "backup" / "params.yaml").read_text())
    for section, values in overrides.items():
        if isinstance(values, dict):
            params[section].update(values)
        else:
            params[section] = values
    (project / name).write_text(yaml.safe_dump(params, sort_keys=False))
    return project / name


def _command(args) -> list[str]:
    return [str(Path(sys.executable).parent / "avapipe"), *map(str, args)]


def avapipe(project: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(_command(args), cwd=project, capture_output=True, text=True)


def start(project: Path, *args) -> subprocess.Popen:
    return subprocess.Popen(_command(args), cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 300.0) -> None:
    """Until ``condition()`` holds or ``process`` ends."""
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def snapshot(path: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``path`` (or of ``path``)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def run_stage(project: Path, module, params_file: Path, monkeypatch) -> None:
    """The stage in this process, as `avapipe extract` runs it in ``project``."""
    monkeypatch.chdir(project)
    module.run(load_params(params_file))


def weights(checkpoint: Path) -> dict:
    return load_classifier(checkpoint).state_dict()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """prepare … memory in this process (a random-weight backbone instead of
    pretraining), then `avapipe train`; the classifier is kept in backup/."""
    root = tmp_path_factory.mktemp("stages")
    torch.manual_seed(0)
    torch.save({"model_state": build_slowfast(width_divisor=4, num_classes=5).state_dict()},
               root / "backbone.pt")
    write_params(root, "params.yaml", {**TINY, "backbone": {"checkpoint": str(root / "backbone.pt")}},
                 base=REPO / "params.yaml")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        params = load_params(root / "params.yaml")
        for stage in (prepare, detect, pose, parts, features, memory):
            stage.run(params)
    finally:
        os.chdir(cwd)
    done = avapipe(root, "train")
    assert done.returncode == 0, done.stderr[-3000:]
    shutil.copytree(root / CLASSIFIER, root / "backup" / "classifier")
    shutil.copy(root / "params.yaml", root / "backup" / "params.yaml")
    shutil.copy(root / "data/results/training_curves.csv", root / "backup")
    return root


@pytest.fixture
def workspace(project):
    """The project, with its classifier and params.yaml put back after the test."""
    yield project
    for leftover in ("classifier", "classifier.partial", "classifier.lock"):
        if (project / "models" / leftover).is_dir():
            shutil.rmtree(project / "models" / leftover)
        elif (project / "models" / leftover).exists():
            (project / "models" / leftover).unlink()
    shutil.copytree(project / "backup" / "classifier", project / CLASSIFIER)
    shutil.copy(project / "backup" / "params.yaml", project / "params.yaml")


def test_a_classifier_inside_the_output_folder_is_used_and_a_misspelled_one_loses_nothing(
        workspace, monkeypatch):
    final = workspace / CLASSIFIER / "final.pth"
    trained = weights(final)
    inside = write_params(workspace, "inside.yaml", {"train": {
        "checkpoint": str(CLASSIFIER / "final.pth")}})
    run_stage(workspace, train, inside, monkeypatch)
    assert all(torch.equal(t, weights(final)[k]) for k, t in trained.items())
    kept = snapshot(workspace / CLASSIFIER)
    misspelled = write_params(workspace, "misspelled.yaml", {"train": {
        "checkpoint": str(CLASSIFIER / "fnal.pth")}})
    with pytest.raises(ParamsError, match=r"train\.checkpoint='models/classifier/fnal\.pth' is "
                                          "not a classifier checkpoint"):
        run_stage(workspace, train, misspelled, monkeypatch)
    assert snapshot(workspace / CLASSIFIER) == kept


@pytest.mark.parametrize("stage, overrides, output, message", [
    ("train", {"fusion": "foo"}, "models/classifier", "fusion='foo' is not one of"),
    ("train", {"train": {"hidden": 0}}, "models/classifier", "train.hidden=0; must be >= 1"),
    ("train", {"train": {"lr": -0.1}}, "models/classifier", "train.lr=-0.1; must be > 0"),
    ("train", {"train": {"dropout": 2}}, "models/classifier", "train.dropout=2.0; must lie in [0, 1)"),
    ("prepare", {"synthetic": {"train_videos": 0}}, "data/raw", "synthetic.train_videos=0; must be >= 1"),
    ("prepare", {"data": {"convention": "kinetics"}}, "data/raw", "data.convention='kinetics'; the built-in"),
    ("detect", {"detect": {"jitter": -0.1}}, "data/interim/persons.parquet", "detect.jitter=-0.1;"),
])
def test_bad_params_stop_a_stage_before_it_deletes_or_writes_anything(workspace, stage, overrides,
                                                                      output, message):
    before = snapshot(workspace / output)
    bad = write_params(workspace, "bad.yaml", overrides)
    done = avapipe(workspace, "extract", stage, "--params", bad)
    assert snapshot(workspace / output) == before
    assert done.returncode != 0 and message in done.stderr, done.stderr[-3000:]


def training_started(project: Path):
    """True once `avapipe train` has begun to write: the partial folder exists
    (or, where the classifier was trained in place, its checkpoints are gone)."""
    return lambda: ((project / "models/classifier.partial").exists()
                    or not (project / CLASSIFIER / "last_checkpoint").exists())


def test_a_model_trained_with_other_params_is_not_evaluated(workspace, monkeypatch):
    run_stage(workspace, train, write_params(workspace, "cube.yaml", {
        "fusion": "cube", "train": {"epochs": 1}}), monkeypatch)
    child = start(workspace, "train")  # params.yaml says fusion: none
    wait_for(training_started(workspace), child)
    assert child.poll() is None, "training ended before it could be killed"
    child.kill()
    child.wait()
    with pytest.raises(ProvenanceError, match="models/classifier was made by the train stage "
                                              "with fusion='cube', but params.yaml has fusion='none'"):
        run_stage(workspace, evaluate, workspace / "params.yaml", monkeypatch)


def test_a_second_writer_of_the_classifier_fails_at_once_naming_the_first(workspace, monkeypatch):
    holder = hold_lock(workspace / CLASSIFIER)
    try:
        with pytest.raises(OutputLockedError, match=f"being written by pid {holder.pid}"):
            run_stage(workspace, train, workspace / "params.yaml", monkeypatch)
    finally:
        holder.kill()
        holder.wait()


def test_params_rewritten_by_another_experiment_while_training_are_refused(workspace, monkeypatch):
    child = start(workspace, "train")
    wait_for(training_started(workspace), child)
    # What a second `dvc exp run -S seed=1` does to the workspace meanwhile:
    write_params(workspace, "params.yaml", {"seed": 1})
    out, err = child.communicate()
    assert child.returncode != 0
    assert "seed was 0 when it started and is 1 now" in err and "dvc exp run --queue" in err
    with pytest.raises(ProvenanceError, match="with seed=0, but params.yaml has seed=1"):
        run_stage(workspace, evaluate, workspace / "params.yaml", monkeypatch)


def test_training_killed_mid_run_resumes_to_the_weights_of_an_uninterrupted_run(workspace):
    whole = weights(workspace / "backup/classifier/final.pth")
    child = start(workspace, "train")
    # mmengine names the newest checkpoint in last_checkpoint once it is written whole.
    wait_for(lambda: (workspace / "models/classifier.partial/last_checkpoint").exists(), child)
    assert child.poll() is None, "training ended before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    done = avapipe(workspace, "train")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming the interrupted run" in done.stdout
    assert "taking over the stale lock" in done.stdout
    resumed = weights(workspace / CLASSIFIER / "final.pth")
    assert all(torch.equal(t, resumed[k]) for k, t in whole.items())
    assert ((workspace / "data/results/training_curves.csv").read_text()
            == (workspace / "backup/training_curves.csv").read_text())
