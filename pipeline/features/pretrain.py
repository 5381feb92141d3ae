"""Brief pretraining of the backbone on the training clips.

With random weights the cached RoI vectors carry little more than colour, so
before extraction on data without a checkpoint the (narrow) SlowFast is
trained, one clip per keyframe, at one of two levels:

- ``clip``: like a Kinetics model: the clip centre-cropped to a square,
  target = the union of the keyframe's person actions, sigmoid BCE.
- ``person``: like an AVA model: the whole frame, each GT person box
  RoI-pooled from res5 exactly as the features stage pools it
  (``pool_rois``) and classified by a linear layer, target = that person's
  actions, sigmoid BCE. A clip-level target makes res5 describe the scene
  as a whole, so every box pooled from it carries much the same scene
  summary; per-box targets make the pooled vector describe what is in the
  box.

``action_ids`` limits the targets to some classes (e.g. only the pose
classes, so that the person vector learns the person and not the evidence
an interaction module is meant to bring). The result is saved as a
pytorchvideo-style checkpoint (``model_state``), so
``backbone_checkpoint.load_backbone_checkpoint`` reads it the way it reads a
user's checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from avapipe.data.video import read_clip
from avapipe.features.backbone import (
    ClipSpec, FeatureExtractor, build_slowfast, clips_to_pathways, pool_rois,
)
from avapipe.schemas import KEYFRAMES

LEVELS = ("clip", "person")
BOX_COLUMNS = ["x1", "y1", "x2", "y2"]


@dataclass(frozen=True)
class PretrainResult:
    state_dict: dict[str, Tensor]
    action_ids: list[int]  # head output j ↔ action action_ids[j]
    epoch_losses: list[float] = field(default_factory=list)  # mean BCE per epoch


def clip_targets(*, keyframes: pd.DataFrame, labels: pd.DataFrame, action_ids: list[int]) -> np.ndarray:
    """float32 [K, A]: 1 where any person of keyframe k does action action_ids[a].

    labels: AVA GT rows (video_id, timestamp, action_id, …); actions not in
    ``action_ids`` are ignored; a keyframe without labels has an all-zero row.
    """
    column = {a: j for j, a in enumerate(action_ids)}
    key = pd.MultiIndex.from_frame(keyframes[["video_id", "timestamp"]].astype({"timestamp": np.int64}))
    targets = np.zeros((len(keyframes), len(action_ids)), np.float32)
    labels = labels[labels["action_id"].isin(column)]
    rows = key.get_indexer(pd.MultiIndex.from_frame(
        labels[["video_id", "timestamp"]].astype({"timestamp": np.int64})))
    known = rows >= 0
    targets[rows[known], labels["action_id"].map(column).to_numpy()[known]] = 1.0
    return targets


class _TrainClips(Dataset):
    def __init__(self, keyframes: pd.DataFrame, targets: np.ndarray, clip: ClipSpec) -> None:
        self.paths = keyframes["video_path"].astype(str).tolist()
        self.times = keyframes["time_sec"].astype(float).tolist()
        self.targets, self.clip = torch.from_numpy(targets), clip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        c = self.clip
        frames = read_clip(self.paths[i], center_sec=self.times[i], num_frames=c.num_frames,
                           stride=c.stride, short_side=c.short_side, fps=c.fps)
        return torch.from_numpy(center_square(frames, c.short_side)), self.targets[i]


def person_targets(*, keyframes: pd.DataFrame, labels: pd.DataFrame,
                   action_ids: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per keyframe: (boxes float32 [P, 4] normalized xyxy, targets float32 [P, A]),
    one row per distinct GT box of the keyframe (a person's rows share a box)."""
    column = {a: j for j, a in enumerate(action_ids)}
    rows = labels.assign(timestamp=labels["timestamp"].astype(np.int64))
    by_keyframe = dict(tuple(rows.groupby(["video_id", "timestamp"], sort=False)))
    found = []
    for video_id, timestamp in zip(keyframes["video_id"], keyframes["timestamp"].astype(np.int64)):
        gt = by_keyframe.get((video_id, int(timestamp)))
        if gt is None:
            found.append((np.zeros((0, 4), np.float32), np.zeros((0, len(action_ids)), np.float32)))
            continue
        boxes, person = np.unique(gt[BOX_COLUMNS].to_numpy(np.float32), axis=0, return_inverse=True)
        targets = np.zeros((len(boxes), len(action_ids)), np.float32)
        known = gt["action_id"].isin(column).to_numpy()
        targets[person.reshape(-1)[known], gt["action_id"][known].map(column).to_numpy()] = 1.0
        found.append((boxes, targets))
    return found


class _TrainPersonClips(_TrainClips):
    """Whole frames, with the keyframe's GT boxes and per-box targets."""

    def __init__(self, keyframes: pd.DataFrame, persons: list, clip: ClipSpec) -> None:
        super().__init__(keyframes, np.zeros((len(keyframes), 0), np.float32), clip)
        self.persons = persons

    def __getitem__(self, i: int):
        c = self.clip
        frames = read_clip(self.paths[i], center_sec=self.times[i], num_frames=c.num_frames,
                           stride=c.stride, short_side=c.short_side, fps=c.fps)
        boxes, targets = self.persons[i]
        return torch.from_numpy(np.ascontiguousarray(frames)), torch.from_numpy(boxes), torch.from_numpy(targets)


def collate_person_clips(batch):
    """Clips zero-padded at the bottom / right to the batch's largest frame; RoIs
    [K, 5] (clip index, x1, y1, x2, y2 in each clip's own pixels); targets [K, A]."""
    height = max(clip.shape[1] for clip, _, _ in batch)
    width = max(clip.shape[2] for clip, _, _ in batch)
    clips = torch.zeros((len(batch), batch[0][0].shape[0], height, width, 3), dtype=torch.uint8)
    rois, targets = [], []
    for i, (clip, boxes, target) in enumerate(batch):
        clips[i, :, :clip.shape[1], :clip.shape[2]] = clip
        scale = torch.tensor([clip.shape[2], clip.shape[1]] * 2, dtype=torch.float32)
        rois.append(torch.cat([torch.full((len(boxes), 1), float(i)), boxes * scale], dim=1))
        targets.append(target)
    return clips, torch.cat(rois), torch.cat(targets)


class PersonClassifier(nn.Module):
    """res5 RoI vectors of a SlowFast (pooled as the features stage pools them)
    → a linear layer; the SlowFast's own head is left untouched."""

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.extractor = FeatureExtractor(net)
        self.linear = nn.Linear(self.extractor.person_channels, num_classes)

    def forward(self, pathways: list[Tensor], rois: Tensor) -> Tensor:
        maps = self.extractor(*pathways)
        return self.linear(pool_rois(maps.res5, rois))


def center_square(frames: np.ndarray, side: int) -> np.ndarray:
    """The central side × side crop of frames [T, H, W, 3] (H, W >= side)."""
    height, width = frames.shape[1:3]
    top, left = (height - side) // 2, (width - side) // 2
    return np.ascontiguousarray(frames[:, top:top + side, left:left + side])


def pretrain_backbone(
    *,
    keyframes: pd.DataFrame,
    labels: pd.DataFrame,
    clip: ClipSpec,
    depth: int = 50,
    beta_inv: int = 8,
    width_divisor: int = 4,
    epochs: int = 4,
    lr: float = 1e-3,
    batch_size: int = 4,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = False,
    level: str = "clip",
    action_ids: list[int] | None = None,
) -> PretrainResult:
    """Trains ``build_slowfast(...)`` on the clips of ``keyframes`` (AdamW, BCE)
    at ``level`` 'clip' or 'person' (module docstring).

    keyframes: KEYFRAMES rows to train on (the caller picks the split).
    labels: AVA GT rows of those keyframes. action_ids: the target classes
    (None: every class in labels). Deterministic on CPU given seed.
    """
    if level not in LEVELS:
        raise ValueError(f"pretrain level {level!r} unknown; valid: {', '.join(LEVELS)}")
    keyframes = KEYFRAMES.validate(keyframes, source="pretrain keyframes")
    if len(keyframes) == 0:
        raise ValueError("pretrain: no keyframes to train on; check the split filter")
    present = sorted(int(a) for a in labels["action_id"].unique())
    action_ids = present if action_ids is None else sorted(set(int(a) for a in action_ids) & set(present))
    if not action_ids:
        raise ValueError("pretrain: no labels of the target classes; pretraining needs action labels")
    torch.manual_seed(seed)
    model = build_slowfast(depth=depth, alpha=clip.alpha, beta_inv=beta_inv,
                           width_divisor=width_divisor, num_classes=len(action_ids))
    generator = torch.Generator().manual_seed(seed)
    if level == "clip":
        targets = clip_targets(keyframes=keyframes, labels=labels, action_ids=action_ids)
        trained = model
        loader = DataLoader(_TrainClips(keyframes, targets, clip), batch_size=batch_size, shuffle=True,
                            num_workers=num_workers, generator=generator)
    else:
        persons = person_targets(keyframes=keyframes, labels=labels, action_ids=action_ids)
        trained = PersonClassifier(model, len(action_ids))
        loader = DataLoader(_TrainPersonClips(keyframes, persons, clip), batch_size=batch_size,
                            shuffle=True, num_workers=num_workers, generator=generator,
                            collate_fn=collate_person_clips)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=lr, weight_decay=1e-4)
    losses = [_train_epoch(trained, loader, optimizer, clip.alpha, progress) for _ in range(epochs)]
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return PretrainResult(state_dict=state, action_ids=action_ids, epoch_losses=losses)


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer, alpha: int, progress: bool) -> float:
    model.train()
    total, count = 0.0, 0
    for clips, *rois, target in tqdm(loader, disable=not progress, desc="pretrain"):
        if len(target) == 0:  # a batch of keyframes without persons
            continue
        logits = model(list(clips_to_pathways(clips, alpha=alpha)), *rois)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total, count = total + float(loss.detach()) * len(target), count + len(target)
    return total / count


def save_backbone_checkpoint(result: PretrainResult, path: Path, *, config: dict) -> None:
    """Saves ``{"model_state", "action_ids", "config"}``; config: the build_slowfast
    and clip parameters, kept so a reader can see what the weights fit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model_state": result.state_dict, "action_ids": result.action_ids,
                "config": dict(config)}, tmp)
    tmp.replace(path)
