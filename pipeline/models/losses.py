"""AVA-style action losses: softmax focal over pose classes, sigmoid focal over the rest.

AVA gives each person exactly one pose class (stand, sit, walk, ...) and
any number of the other (person-object, person-person) classes, so the pose
classes are one softmax and every other class is its own sigmoid. Which
classes are poses is passed in as a boolean mask. With gamma = 0 the focal
losses are plain cross-entropy and binary cross-entropy.

The weighting is AlphAction's (its loss.py with POSE_LOSS_WEIGHT 1.2 and
OBJECT/PERSON_LOSS_WEIGHT equal to their class counts, which turns its mean
over those classes into a sum): 1.2 times the softmax loss plus the sigmoid
loss summed over the non-pose classes, both summed over the persons and
divided by the number of persons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


POSE_WEIGHT = 1.2  # AlphAction's POSE_LOSS_WEIGHT


class ActionLoss(NamedTuple):
    """total = pose + other (scalars); pose includes its weight."""

    total: Tensor
    pose: Tensor
    other: Tensor


def softmax_focal_loss(*, logits: Tensor, target: Tensor, gamma: float) -> Tensor:
    """-(1 - p_t)^gamma · log p_t per row, p = softmax(logits).

    logits: Tensor[N, K]; target: Long[N] class index in [0, K). Returns Tensor[N].
    """
    log_probs = F.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
    return -((1 - log_probs.exp()) ** gamma) * log_probs


def sigmoid_focal_loss(*, logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """-[y (1 - p)^gamma log p + (1 - y) p^gamma log(1 - p)], p = sigmoid(logits).

    logits, targets: Tensor[N, K] (targets in [0, 1]). Returns Tensor[N, K].
    """
    prob = torch.sigmoid(logits)
    positive = targets * (1 - prob) ** gamma * F.logsigmoid(logits)
    negative = (1 - targets) * prob ** gamma * F.logsigmoid(-logits)
    return -(positive + negative)


def _check_targets(targets: Tensor, pose_classes: Tensor, logits: Tensor) -> None:
    if targets.shape != logits.shape or pose_classes.shape != logits.shape[-1:]:
        raise ValueError(f"targets {tuple(targets.shape)} and pose_classes "
                         f"{tuple(pose_classes.shape)} must be [N, A] and [A] for "
                         f"logits {tuple(logits.shape)}")
    if pose_classes.dtype != torch.bool:
        raise ValueError("pose_classes must be a bool mask over the classes (True = pose class)")
    not_binary = (targets != 0) & (targets != 1)
    if not_binary.any():
        row, column = torch.nonzero(not_binary)[0].tolist()
        raise ValueError(f"targets[{row}, {column}] = {float(targets[row, column])}; "
                         "targets must be multi-hot 0/1 labels")
    pose_counts = targets[:, pose_classes].sum(dim=1)
    if (pose_counts > 1).any():
        row = int(torch.nonzero(pose_counts > 1)[0, 0])
        raise ValueError(f"targets row {row} has {int(pose_counts[row])} pose labels; "
                         "a person has at most one pose class: keep one per person")


def action_loss(*, logits: Tensor, targets: Tensor, pose_classes: Tensor,
                gamma: float, pose_weight: float = POSE_WEIGHT) -> ActionLoss:
    """The loss of one head over N persons.

    logits: Tensor[N, A]; targets: Tensor[N, A] multi-hot 0/1;
    pose_classes: Bool[A], True for the pose classes; gamma >= 0.
    pose: pose_weight · the softmax focal loss over the pose columns, summed
      over the persons that have a pose label (one without contributes
      nothing), / N;
    other: the sigmoid focal loss summed over every (person, non-pose class)
      entry, / N.
    With N = 0 both are 0 (still connected to logits).
    """
    if gamma < 0:
        raise ValueError(f"gamma = {gamma}; the focal exponent must be >= 0")
    _check_targets(targets, pose_classes, logits)
    pose_logits, pose_targets = logits[:, pose_classes], targets[:, pose_classes]
    labelled = pose_targets.sum(dim=1) == 1
    pose = softmax_focal_loss(logits=pose_logits[labelled],
                              target=pose_targets[labelled].argmax(dim=1), gamma=gamma)
    other = sigmoid_focal_loss(logits=logits[:, ~pose_classes],
                               targets=targets[:, ~pose_classes], gamma=gamma)
    persons = max(1, logits.shape[0])
    pose, other = pose_weight * pose.sum() / persons, other.sum() / persons
    return ActionLoss(total=pose + other, pose=pose, other=other)


def head_loss(*, logits: Sequence[Tensor], targets: Tensor, person_mask: Tensor,
              pose_classes: Tensor, gamma: float) -> ActionLoss:
    """The summed loss of every trained head over the real persons of a batch.

    logits: the heads' Tensor[B, P, A] (one, or fused and global with Pose-Part);
    targets: Tensor[B, P, A] multi-hot; person_mask: Bool[B, P].
    """
    if not logits:
        raise ValueError("head_loss needs the logits of at least one head")
    losses = [action_loss(logits=head[person_mask], targets=targets[person_mask],
                          pose_classes=pose_classes, gamma=gamma) for head in logits]
    return ActionLoss(*(sum(parts) for parts in zip(*losses)))


def class_probabilities(*, logits: Tensor, pose_classes: Tensor) -> Tensor:
    """The probabilities the loss models: softmax over the pose columns, sigmoid elsewhere.

    logits: Tensor[..., A]; pose_classes: Bool[A]. Returns Tensor[..., A].
    """
    lowest = torch.finfo(logits.dtype).min
    pose_probabilities = torch.softmax(logits.masked_fill(~pose_classes, lowest), dim=-1)
    return torch.where(pose_classes, pose_probabilities, torch.sigmoid(logits))
