"""Training the action classifier on cached features with mmengine's Runner.

Per epoch: one pass over the training keyframes (shuffled by mmengine's
DefaultSampler from seed and epoch), then frame-mAP@0.5 of the validation
keyframes with the official-metric implementation. The Runner keeps the
latest epoch checkpoint (for resuming) and the best one by validation mAP.

Resuming continues exactly where the run stopped: besides what mmengine
saves (weights, optimizer, schedulers, best score), each checkpoint holds
the torch random state and the training curves, and a checkpoint written
before its epoch's validation has that validation run first. On CPU a
resumed run therefore reproduces the uninterrupted one.

Checkpoints are loaded under ``trusted_openmmlab_checkpoints`` (torch's
``weights_only`` loading, with the few mmengine classes allowlisted).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm
import torch
from mmengine.dataset import DefaultSampler
from mmengine.device import get_device
from mmengine.dist import all_reduce
from mmengine.evaluator import Evaluator
from mmengine.hooks import CheckpointHook, Hook, LoggerHook
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR, OptimWrapper
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from avapipe.checkpoints import trusted_openmmlab_checkpoints
from avapipe.distributed import barrier, init_from_env, is_main_process
from avapipe.features.memory import load_memory_index
from avapipe.features.store import open_features
from avapipe.models.dataset import KeyframeDataset, collate_keyframes
from avapipe.models.labels import pose_class_mask, training_targets
from avapipe.models.predict import MODEL_KEY, ActionClassifier, FrameMapMetric

log = logging.getLogger(__name__)

OPTIMIZERS = {  # AlphAction trains with SGD; AdamW needs less tuning on small data
    "adamw": dict(type=torch.optim.AdamW, weight_decay=1e-4),
    "sgd": dict(type=torch.optim.SGD, momentum=0.9, weight_decay=1e-7),
}
METRIC = "frame/mAP"
TRAINING_KEY = "avapipe_training"
_RUN_NUMBER = itertools.count()


class TrainingError(ValueError):
    """The training inputs do not fit together, or a resume does not fit the run."""


@dataclass(frozen=True)
class TrainResult:
    """checkpoint: best epoch by validation mAP; last_checkpoint: the final epoch;
    curves: epoch, train_loss, val_mAP per epoch; best_mAP: its validation mAP."""

    checkpoint: Path
    last_checkpoint: Path
    curves: pd.DataFrame
    best_mAP: float


class TrainStateHook(Hook):
    """Records the curves, stores what a resume needs in each checkpoint, and
    refuses to resume a checkpoint of a different model or training setup."""

    priority = "NORMAL"

    def __init__(self, *, training: dict, curves_path: Path) -> None:
        self.training, self.curves_path = training, Path(curves_path)
        self.curves: list[dict] = []
        self.losses: list[float] = []
        self.bar: tqdm | None = None

    def before_train(self, runner) -> None:
        self.bar = tqdm(total=runner.max_epochs, initial=runner.epoch, desc="train",
                        unit="epoch", disable=not is_main_process())

    def before_train_epoch(self, runner) -> None:
        self._validate_if_pending(runner)
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append(float(outputs["loss"].detach()))

    def after_train_epoch(self, runner) -> None:
        # The mean over every process's batches (one process: its own mean).
        loss = torch.tensor(np.mean(self.losses) if self.losses else math.nan, dtype=torch.float64)
        all_reduce(loss, op="mean")
        loss = float(loss)
        self.curves.append({"epoch": runner.epoch + 1, "train_loss": loss, "val_mAP": None})

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self.curves and self.curves[-1]["epoch"] == runner.epoch:
            self.curves[-1]["val_mAP"] = float(metrics[METRIC])
            if is_main_process():
                write_curves(pd.DataFrame(self.curves), self.curves_path)
            if self.bar is not None:
                last = self.curves[-1]
                self.bar.set_postfix(loss=f"{last['train_loss']:.4f}", val_mAP=f"{last['val_mAP']:.4f}")
                self.bar.update(last["epoch"] - self.bar.n)

    def after_train(self, runner) -> None:
        self._validate_if_pending(runner)
        if self.bar is not None:
            self.bar.close()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        checkpoint[MODEL_KEY] = model.config
        checkpoint[TRAINING_KEY] = {**self.training, "curves": [dict(r) for r in self.curves],
                                    "rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint[TRAINING_KEY]["cuda_rng"] = torch.cuda.get_rng_state_all()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get(TRAINING_KEY, {})
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        differing = [k for k in self.training if saved.get(k) != self.training[k]]
        if checkpoint.get(MODEL_KEY) != model.config or differing:
            raise TrainingError(
                f"{runner.work_dir}: its last checkpoint was trained with other settings "
                f"({differing or 'model'}); pass resume=False or another work_dir")
        self.curves = [dict(r) for r in saved["curves"]]
        torch.set_rng_state(saved["rng"])
        if "cuda_rng" in saved and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])

    def _validate_if_pending(self, runner) -> None:
        # The epoch checkpoint is written before that epoch's validation.
        if self.curves and self.curves[-1]["val_mAP"] is None and runner.val_loop is not None:
            runner.val_loop.run()


def write_curves(curves: pd.DataFrame, path: Path) -> None:
    """Writes curves as ``path`` (CSV) and the same name with ``.json`` (a list of
    records), the plain files ``dvc plots`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, text in ((path, curves.to_csv(index=False)),
                         (path.with_suffix(".json"),
                          json.dumps(curves.to_dict(orient="records"), indent=1))):
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        tmp.replace(target)


def train_classifier(
    *, store_path: str | Path, memory_path: str | Path | None, train_keyframes: pd.DataFrame,
    val_keyframes: pd.DataFrame, train_gt: pd.DataFrame, val_gt: pd.DataFrame,
    label_map: dict[int, str], groups: dict[int, str] | None, exclusions: pd.DataFrame | None,
    fusion: str, pose_part: bool, hidden: int, epochs: int, lr: float, batch_size: int,
    seed: int, device: str, work_dir: str | Path, dropout: float = 0.2, gamma: float = 0.0,
    optimizer: str = "adamw", iou_threshold: float = 0.5, random_copy: bool = False,
    preload: bool = True, resume: bool = True, curves_path: str | Path | None = None,
    deterministic: bool = True, log_level: str = "WARNING", launcher: str = "none",
    action_ids: Sequence[int] | None = None, fc_width: int = 1024, padding: str = "mask",
    attend_self: bool = False, part_pooling: str = "concat", memory_reader: str = "attention",
) -> TrainResult:
    """Trains an ActionHead on the cached features; returns the best checkpoint.

    train_gt / val_gt: AVA GT rows (video_id, timestamp, x1..y2, action_id[, person_id]);
    label_map: {action id: name}, the classes evaluated; action_ids: the classes
    trained (the head's outputs; AVA: 80), a superset of the label map's,
    None = the label map's (``avapipe.data.label_spaces``); groups:
    {action id: group} ('pose' marks the softmax classes), None = AVA's;
    exclusions: video_id, timestamp of keyframes left out of the val mAP.
    Val mAP counts only GT rows of ``val_keyframes``. device: 'cpu' or 'cuda'
    (AMP on). work_dir: checkpoints and logs; resume=True continues its last
    checkpoint. curves_path: the curves CSV (+ .json), default in work_dir.
    deterministic: torch's deterministic algorithms (off only if a CUDA op lacks one).
    gamma: focal exponent (0: cross-entropy). fc_width: of the classifiers' two fully
    connected layers; padding ('mask' | 'attend'), attend_self: how the interaction
    blocks read the sets (``avapipe.models.sources``); part_pooling ('concat' |
    'mean'): how Pose-Part reduces the ten parts; memory_reader ('attention' |
    'spans'): the memory block (``avapipe.models.blocks``). random_copy: train on a random stored
    box copy (jittered boxes) per keyframe and epoch.
    launcher: 'none' (one process), 'pytorch' (under torchrun) or 'slurm' (under
    srun): data-parallel training, ``batch_size`` keyframes per process; every
    process gets the same result, rank 0 writes the checkpoints and curves.
    """
    _check_settings(epochs=epochs, batch_size=batch_size, optimizer=optimizer, device=device)
    # Before the samplers are built: they read the rank and world size.
    init_from_env(device=device, launcher=launcher)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not resume and is_main_process():
        _remove_checkpoints(work_dir)
    barrier()
    store = open_features(Path(store_path))
    memory = None if memory_path is None else load_memory_index(Path(memory_path))
    action_ids = _trained_ids(action_ids, label_map)
    pose_classes = pose_class_mask(action_ids, groups)
    train_set, val_set = _datasets(
        store, memory, train_keyframes=train_keyframes, val_keyframes=val_keyframes,
        targets=_targets(store, train_gt, action_ids, pose_classes, iou_threshold),
        with_parts=pose_part, preload=preload, random_copy=random_copy)
    model = dict(type=ActionClassifier, head=dict(
        fusion=fusion, pose_part=bool(pose_part), in_channels=store.array("persons").shape[1],
        part_channels=store.array("parts").shape[2], num_classes=len(action_ids), hidden=hidden,
        memory_span=memory.span if memory is not None else 0,
        memory_per_second=memory.per_second if memory is not None else 1, dropout=dropout,
        fc_width=fc_width, padding=padding, attend_self=bool(attend_self),
        part_pooling=part_pooling, memory_reader=memory_reader),
        action_ids=action_ids, pose_classes=pose_classes.tolist(), gamma=gamma)
    metric = FrameMapMetric(groundtruth=_rows_of(val_gt, val_set.keyframes, label_map),
                            label_map=label_map, excluded=exclusions, action_ids=action_ids,
                            keyframes=val_set.keyframes)
    hook = TrainStateHook(
        training=dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, optimizer=optimizer,
                      iou_threshold=iou_threshold, random_copy=random_copy, device=device),
        curves_path=Path(curves_path or work_dir / "training_curves.csv"))
    with trusted_openmmlab_checkpoints(), _restored_global_torch_flags():
        runner = _runner(model=model, train_set=train_set, val_set=val_set, metric=metric,
                         hook=hook, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                         optimizer=optimizer, device=device, work_dir=work_dir, resume=resume,
                         deterministic=deterministic, log_level=log_level, launcher=launcher)
        runner.train()
    barrier()  # rank 0 may still be writing the best checkpoint
    return _result(runner, hook, work_dir)


def _trained_ids(action_ids, label_map) -> list[int]:
    trained = sorted({int(a) for a in (label_map if action_ids is None else action_ids)})
    unscored = sorted(set(int(a) for a in label_map) - set(trained))
    if unscored:
        raise TrainingError(f"evaluated classes {unscored[:5]} are not among the {len(trained)} "
                            "trained classes; train on every class of the label map")
    return trained


def _targets(store, groundtruth, action_ids, pose_classes, iou_threshold) -> np.ndarray:
    targets, changed = training_targets(boxes=store.persons, groundtruth=groundtruth,
                                        action_ids=action_ids, pose_classes=pose_classes,
                                        iou_threshold=iou_threshold)
    if changed:
        log.warning("%d cached boxes matched GT boxes with several pose labels; "
                    "kept the first pose class of each", changed)
    return targets


def _datasets(store, memory, *, train_keyframes, val_keyframes, targets, with_parts, preload,
              random_copy) -> tuple[KeyframeDataset, KeyframeDataset]:
    train_set = KeyframeDataset(store, memory, keyframes=train_keyframes, targets=targets,
                                with_parts=with_parts, preload=preload, random_copy=random_copy)
    val_set = KeyframeDataset(store, memory, keyframes=val_keyframes, targets=None,
                              with_parts=with_parts, preload=preload)
    return train_set, val_set


def _runner(*, model: dict, train_set: KeyframeDataset, val_set: KeyframeDataset,
            metric: FrameMapMetric, hook: TrainStateHook, epochs: int, lr: float,
            batch_size: int, seed: int, optimizer: str, device: str, work_dir: Path,
            resume: bool, deterministic: bool, log_level: str, launcher: str) -> Runner:
    loader = DataLoader(train_set, batch_size=batch_size, collate_fn=collate_keyframes,
                        sampler=DefaultSampler(train_set, shuffle=True, seed=seed))
    return Runner(
        model=model, work_dir=str(work_dir), experiment_name=_experiment_name(),
        train_dataloader=loader,
        # The sampler splits validation between processes; the metric gathers it back.
        val_dataloader=DataLoader(val_set, batch_size=batch_size, collate_fn=collate_keyframes,
                                  sampler=DefaultSampler(val_set, shuffle=False)),
        val_evaluator=Evaluator([metric]), val_cfg=dict(),
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=1),
        optim_wrapper=_optim_wrapper(optimizer, lr, device),
        param_scheduler=_schedulers(epochs=epochs, iters_per_epoch=len(loader), lr=lr),
        default_hooks=dict(
            checkpoint=dict(type=CheckpointHook, interval=1, max_keep_ckpts=1, save_last=True,
                            save_best=METRIC, rule="greater"),
            logger=dict(type=LoggerHook, interval=max(1, len(loader)))),
        custom_hooks=[hook], randomness=dict(seed=seed, deterministic=deterministic),
        resume=resume, log_level=log_level, launcher=launcher,
        cfg=dict(model_wrapper_cfg=_ddp_wrapper(device)) if launcher != "none" else None)


def _check_settings(*, epochs: int, batch_size: int, optimizer: str, device: str) -> None:
    if epochs < 1 or batch_size < 1:
        raise TrainingError(f"epochs={epochs} and batch_size={batch_size} must be >= 1")
    if optimizer not in OPTIMIZERS:
        raise TrainingError(f"optimizer {optimizer!r} unknown; use one of {sorted(OPTIMIZERS)}")
    if device not in ("cpu", "cuda"):
        raise TrainingError(f"device {device!r} unknown; use 'cpu' or 'cuda'")
    found = get_device()
    if device != found:
        # mmengine puts the model on the accelerator it finds at import time.
        raise TrainingError(
            f"device={device!r} but mmengine trains on {found!r} here; set device: {found} "
            "or, to train on the CPU of a GPU machine, export CUDA_VISIBLE_DEVICES=-1")
    if device == "cuda":
        # cuBLAS needs this before its first call to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _ddp_wrapper(device: str) -> dict:
    # mmengine passes device_ids=[LOCAL_RANK], which DDP refuses for a CPU model.
    return dict(type="MMDistributedDataParallel", broadcast_buffers=False,
                device_ids=None if device == "cpu" else [int(os.environ["LOCAL_RANK"])])


def _optim_wrapper(optimizer: str, lr: float, device: str) -> dict:
    wrapper = AmpOptimWrapper if device == "cuda" else OptimWrapper
    return dict(type=wrapper, optimizer=dict(OPTIMIZERS[optimizer], lr=lr))


def _schedulers(*, epochs: int, iters_per_epoch: int, lr: float) -> list[dict]:
    """Linear warmup over the first epoch, then cosine decay to lr / 100."""
    schedulers = [dict(type=LinearLR, start_factor=0.1, by_epoch=False, begin=0,
                       end=max(1, iters_per_epoch))]
    if epochs > 1:
        schedulers.append(dict(type=CosineAnnealingLR, by_epoch=True, begin=1, end=epochs,
                               T_max=epochs - 1, eta_min=lr / 100, convert_to_iter_based=True))
    return schedulers


def _rows_of(groundtruth: pd.DataFrame, keyframes: pd.DataFrame,
             label_map: dict[int, str]) -> pd.DataFrame:
    keys = pd.MultiIndex.from_frame(keyframes[["video_id", "timestamp"]])
    mine = pd.MultiIndex.from_arrays([groundtruth["video_id"].astype(str),
                                      groundtruth["timestamp"].astype(np.int64)])
    rows = groundtruth[mine.isin(keys)].reset_index(drop=True)
    if not rows["action_id"].isin(list(label_map)).any():
        raise TrainingError("the validation ground truth has no box of a label-map class on "
                            "the validation keyframes, so no mAP can be computed; check the "
                            "val CSV, the label map and val_keyframes")
    return rows


def _remove_checkpoints(work_dir: Path) -> None:
    for pattern in ("epoch_*.pth", "best_*.pth", "last_checkpoint"):
        for path in work_dir.glob(pattern):
            path.unlink()


def _experiment_name() -> str:
    # mmengine keys its logger and message hub by this name; two runs in one
    # process and second must not share them.
    return f"avapipe_train_{time.strftime('%Y%m%d_%H%M%S')}_{os.getpid()}_{next(_RUN_NUMBER)}"


@contextmanager
def _restored_global_torch_flags():
    """mmengine's deterministic mode sets process-wide torch flags; put them back."""
    flags = (torch.are_deterministic_algorithms_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(flags[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[1:]


def _result(runner: Runner, hook: TrainStateHook, work_dir: Path) -> TrainResult:
    hub = runner.message_hub
    last = Path((work_dir / "last_checkpoint").read_text().strip())
    best = hub.get_info("best_ckpt")
    return TrainResult(checkpoint=Path(best) if best else last, last_checkpoint=last,
                       curves=pd.DataFrame(hook.curves, columns=["epoch", "train_loss", "val_mAP"]),
                       best_mAP=float(hub.get_info("best_score", math.nan)))
