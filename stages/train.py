"""train: the action classifier (fusion head, optional Pose-Part) on cached features.

The classifier is trained in ``models/classifier.partial`` under the lock
``models/classifier.lock`` and renamed into ``models/classifier`` when done,
so a failed or killed run leaves the previous classifier as it was. A run
with the same params and inputs (the same provenance record) continues the
partial folder from its newest intact epoch checkpoint, and on the CPU ends
with the weights an uninterrupted run gets; any other run starts it afresh.
"""

from __future__ import annotations

import re
import shutil
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from avapipe.checkpoints import load_trusted_checkpoint, local_checkpoint_path
from avapipe.data import ava
from avapipe.distributed import init_from_env, is_main_process, launcher_from_env, run_on_main
from avapipe.features.store import open_features
from avapipe.models.head import uses_objects
from avapipe.models.predict import load_classifier
from avapipe.models.train import train_classifier, write_curves
from avapipe.outputs import (
    output_lock, publish, remove_path, replacing_file, restore_interrupted, staging_path,
)
from avapipe.provenance import read_record, write_folder_record
from stages import labels, paths
from stages.features import STORE
from stages.memory import MEMORY
from stages.params import Params, ParamsError
from stages.records import checked_inputs

WORK_DIR = paths.MODELS / "classifier"
CHECKPOINT = WORK_DIR / "final.pth"
CURVES = paths.RESULTS / "training_curves.csv"
INPUTS = (STORE, MEMORY, paths.LABELS, paths.KEYFRAMES)


def _checked_classifier(source: str) -> Path:
    """The local file of ``train.checkpoint``, after loading it as a classifier."""
    try:
        local = Path(local_checkpoint_path(source))
        load_classifier(local)
    except Exception as err:  # noqa: BLE001 - any failure to load is the same bad value
        raise ParamsError(f"params.yaml: train.checkpoint={source!r} is not a classifier "
                          f"checkpoint that loads ({err}); give the final.pth of a train "
                          "stage's models/classifier, or '' to train one") from err
    return local


def _check_objects(params: Params) -> None:
    """A head that reads object features needs object boxes in every split it
    learns or is scored on: without them the O branch learns from nothing."""
    if not uses_objects(fusion=params.fusion, pose_part=params.pose_part):
        return
    objects = open_features(STORE).objects[["video_id", "timestamp"]]
    for split in ("train", "val"):
        keyframes = labels.keyframes_of(split)
        if len(keyframes) and objects.merge(keyframes[["video_id", "timestamp"]]).empty:
            raise ParamsError(
                f"fusion={params.fusion}, pose_part={str(params.pose_part).lower()} reads object "
                f"features, but the {split} split has no object boxes. Set detect.object_source "
                "to mmdet (the detector's objects for every split) or gt (built-in data), or "
                "train fusion=none with pose_part=false")


def _resume_point(work: Path) -> bool:
    """Whether ``work`` holds an intact epoch checkpoint; points mmengine's
    ``last_checkpoint`` at the newest one. A kill can cut a checkpoint being
    written, or fall between mmengine deleting the previous one and
    updating ``last_checkpoint``."""
    def epoch(path: Path) -> int:
        return int(re.sub(r"\D", "", path.stem) or -1)

    for path in sorted(work.glob("epoch_*.pth"), key=epoch, reverse=True):
        try:
            load_trusted_checkpoint(path)
        except Exception:  # noqa: BLE001 - a cut file: fall back to the one before
            path.unlink()
            continue
        (work / "last_checkpoint").write_text(str(path))
        return True
    return False


def _open_work_dir(held: ExitStack, record: dict, *, may_resume: bool) -> tuple[Path, bool]:
    """Takes the lock; returns (the staging folder, whether training resumes in it)."""
    held.enter_context(output_lock(WORK_DIR))
    restore_interrupted(WORK_DIR)
    work = staging_path(WORK_DIR)
    resume = may_resume and read_record(work) == record and _resume_point(work)
    if not resume:
        remove_path(work)
        work.mkdir(parents=True)
        write_folder_record(work, record)
    return work, resume


def _train(params: Params, work: Path, resume: bool) -> Path:
    """Trains in ``work``; returns the last epoch's checkpoint."""
    t = params.train
    trained, evaluated = labels.trained_classes(), ava.read_label_map(paths.LABEL_MAP)
    print(f"train: {len(trained)} classes trained, {len(evaluated)} of them evaluated"
          + ("; resuming the interrupted run in " + str(work) if resume else ""))
    result = train_classifier(
        store_path=STORE, memory_path=MEMORY,
        train_keyframes=labels.keyframes_of("train"), val_keyframes=labels.keyframes_of("val"),
        train_gt=labels.groundtruth("train"), val_gt=labels.groundtruth("val"),
        label_map=evaluated, action_ids=list(trained), groups=labels.groups(),
        exclusions=labels.exclusions(), fusion=params.fusion, pose_part=params.pose_part,
        hidden=t.hidden, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, seed=params.seed,
        device=params.device, work_dir=work, dropout=t.dropout, gamma=t.gamma,
        optimizer=t.optimizer, fc_width=t.fc_width, padding=t.padding,
        attend_self=t.attend_self, part_pooling=t.part_pooling, memory_reader=t.memory_reader,
        resume=resume, curves_path=work / CURVES.name,
        launcher=launcher_from_env(),  # 'pytorch' under torchrun, 'slurm' under srun
    )
    final = result.curves["val_mAP"].iloc[-1]
    if is_main_process():
        print(f"train: val mAP {final:.4f} after the last epoch (best epoch: "
              f"{result.best_mAP:.4f}) → {CHECKPOINT}")
    return result.last_checkpoint


def _no_curves(path: Path) -> None:
    """The curves of a classifier that was not trained here: no epochs."""
    write_curves(pd.DataFrame(columns=["epoch", "train_loss", "val_mAP"]), path)


def run(params: Params) -> None:
    source = params.train.checkpoint
    record = checked_inputs("train", params, INPUTS)
    given = _checked_classifier(source) if source else None
    if given is None:
        _check_objects(params)
    init_from_env(device=params.device, launcher=launcher_from_env())
    with ExitStack() as held:
        work, resume = run_on_main(lambda: _open_work_dir(held, record, may_resume=not source))
        if given is None:
            last = _train(params, work, resume)
        else:
            _no_curves(work / CURVES.name)
            print(f"train: skipped, using the classifier {source} → {CHECKPOINT}")
        if not is_main_process():
            return
        # The last epoch, not the best on val: picking by val mAP would flatter val mAP.
        shutil.copy(given or last, work / CHECKPOINT.name)
        publish(work, WORK_DIR)
    for curves in (CURVES, CURVES.with_suffix(".json")):
        with replacing_file(curves) as tmp:
            shutil.copy(WORK_DIR / curves.name, tmp)
