"""Brief clip-level pretraining of the backbone on the training clips.

With random weights the cached RoI vectors carry little more than colour, so
before extraction on data without a checkpoint the (narrow) SlowFast is
trained like a Kinetics model: one clip per keyframe, centre-cropped to a
square, target = the union of the keyframe's person actions, sigmoid BCE.
The result is saved as a pytorchvideo-style checkpoint (``model_state``), so
``backbone_checkpoint.load_backbone_checkpoint`` reads it the way it reads a user's checkpoint.
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
from avapipe.features.backbone import ClipSpec, build_slowfast, clips_to_pathways
from avapipe.schemas import KEYFRAMES


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
) -> PretrainResult:
    """Trains ``build_slowfast(...)`` on the clips of ``keyframes`` (AdamW, BCE).

    keyframes: KEYFRAMES rows to train on (the caller picks the split).
    labels: AVA GT rows of those keyframes. Deterministic on CPU given seed.
    """
    keyframes = KEYFRAMES.validate(keyframes, source="pretrain keyframes")
    if len(keyframes) == 0:
        raise ValueError("pretrain: no keyframes to train on; check the split filter")
    action_ids = sorted(int(a) for a in labels["action_id"].unique())
    if not action_ids:
        raise ValueError("pretrain: the labels table is empty; pretraining needs action labels")
    torch.manual_seed(seed)
    model = build_slowfast(depth=depth, alpha=clip.alpha, beta_inv=beta_inv,
                           width_divisor=width_divisor, num_classes=len(action_ids))
    targets = clip_targets(keyframes=keyframes, labels=labels, action_ids=action_ids)
    loader = DataLoader(_TrainClips(keyframes, targets, clip), batch_size=batch_size, shuffle=True,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    losses = [_train_epoch(model, loader, optimizer, clip.alpha, progress) for _ in range(epochs)]
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return PretrainResult(state_dict=state, action_ids=action_ids, epoch_losses=losses)


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer, alpha: int, progress: bool) -> float:
    model.train()
    total, count = 0.0, 0
    for clips, target in tqdm(loader, disable=not progress, desc="pretrain"):
        logits = model(list(clips_to_pathways(clips, alpha=alpha)))
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
