"""train: the action classifier (fusion head, optional Pose-Part) on cached features."""

from __future__ import annotations

import shutil

from avapipe.data import ava
from avapipe.distributed import is_main_process, launcher_from_env
from avapipe.features.store import open_features
from avapipe.models.head import uses_objects
from avapipe.models.sources import PADDINGS
from avapipe.models.train import train_classifier
from stages import labels, paths
from stages.features import STORE
from stages.memory import MEMORY
from stages.params import Params, ParamsError, check_choice

WORK_DIR = paths.MODELS / "classifier"
CHECKPOINT = WORK_DIR / "final.pth"
CURVES = paths.RESULTS / "training_curves.csv"


def _use_checkpoint(source: str) -> None:
    """No training: the given classifier becomes this stage's output."""
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    shutil.copy(source, CHECKPOINT)
    CURVES.parent.mkdir(parents=True, exist_ok=True)
    CURVES.write_text("epoch,train_loss,val_mAP\n")
    print(f"train: skipped, using the classifier {source} → {CHECKPOINT}")


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


def run(params: Params) -> None:
    t = params.train
    if t.checkpoint:
        _use_checkpoint(t.checkpoint)
        return
    check_choice(t.padding, PADDINGS, key="train.padding")
    _check_objects(params)
    trained, evaluated = labels.trained_classes(), ava.read_label_map(paths.LABEL_MAP)
    print(f"train: {len(trained)} classes trained, {len(evaluated)} of them evaluated")
    result = train_classifier(
        store_path=STORE, memory_path=MEMORY,
        train_keyframes=labels.keyframes_of("train"), val_keyframes=labels.keyframes_of("val"),
        train_gt=labels.groundtruth("train"), val_gt=labels.groundtruth("val"),
        label_map=evaluated, action_ids=list(trained), groups=labels.groups(),
        exclusions=labels.exclusions(), fusion=params.fusion, pose_part=params.pose_part,
        hidden=t.hidden, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, seed=params.seed,
        device=params.device, work_dir=WORK_DIR, dropout=t.dropout, gamma=t.gamma,
        optimizer=t.optimizer, fc_width=t.fc_width, padding=t.padding,
        attend_self=t.attend_self, resume=False, curves_path=CURVES,
        launcher=launcher_from_env(),  # 'pytorch' under torchrun, 'slurm' under srun
    )
    if not is_main_process():
        return
    # The last epoch, not the best on val: picking by val mAP would flatter val mAP.
    shutil.copy(result.last_checkpoint, CHECKPOINT)
    final = result.curves["val_mAP"].iloc[-1]
    print(f"train: val mAP {final:.4f} after the last epoch (best epoch: "
          f"{result.best_mAP:.4f}) → {CHECKPOINT}")
