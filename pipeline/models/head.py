"""The action head: an interaction structure (and optionally Pose-Part) plus classifiers.

For B keyframes it classifies every real person into num_classes actions.
The "global" feature is the person feature plus the chosen structure's
interaction feature (AlphAction's ``FUSION: "add"``; ``none`` adds nothing).
Every classifier is AlphAction's: two fully connected layers of width
fc_width with ReLU (its 2MLPFeatureExtractor), dropout, and a linear layer
(its FCPredictor) — so the ``none`` baseline is the same two-layer head on
the person feature, not a linear probe. With Pose-Part a second such
classifier reads [global feature, part-reasoning feature] (the seed applies
"fully connected layers in both fuse features and global features"); both
classifiers are trained (the loss sums over them) and at inference their
class probabilities are averaged (`head_probabilities`), since each is a
full classifier in its own right and averaging two such predictors is the
usual way to combine them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from avapipe.models.cube import CubeFusion
from avapipe.models.interaction import HeadInputError, KeyframeSets, zero_padded
from avapipe.models.losses import class_probabilities
from avapipe.models.pose_part import NUM_PARTS, PosePartNetwork
from avapipe.models.sources import ContextOptions
from avapipe.models.structures import (DenseSerialStructure, NoInteraction,
                                       ParallelStructure, SerialStructure)

FUSIONS = {
    "none": NoInteraction,
    "serial": SerialStructure,
    "dense": DenseSerialStructure,
    "parallel": ParallelStructure,
    "cube": CubeFusion,
}


class HeadOutput(NamedTuple):
    """logits: Tensor[B, P, A], the head's prediction (fused with Pose-Part, else global);
    global_logits: Tensor[B, P, A] of the global classifier with Pose-Part, else None.
    Logits at padded person slots are 0."""

    logits: Tensor
    global_logits: Tensor | None

    def trained_logits(self) -> list[Tensor]:
        """Every classifier's logits; the loss sums over all of them."""
        return [self.logits] if self.global_logits is None else [self.logits, self.global_logits]


def head_probabilities(output: HeadOutput, *, pose_classes: Tensor) -> Tensor:
    """Tensor[B, P, A]: the mean over the classifiers of their class probabilities
    (softmax over pose_classes: Bool[A], sigmoid elsewhere)."""
    heads = output.trained_logits()
    return sum(class_probabilities(logits=logits, pose_classes=pose_classes)
               for logits in heads) / len(heads)


def _check(name: str, tensor: Tensor, shape: tuple[int | None, ...], kind: str) -> None:
    dims = ", ".join("*" if size is None else str(size) for size in shape)
    matches = tensor.dim() == len(shape) and all(
        want is None or want == got for want, got in zip(shape, tensor.shape))
    if not matches:
        raise HeadInputError(f"{name} has shape {tuple(tensor.shape)}, expected [{dims}]")
    kinds = {"float": tensor.is_floating_point(), "bool": tensor.dtype == torch.bool,
             "int": not tensor.is_floating_point() and tensor.dtype != torch.bool}
    if not kinds[kind]:
        raise HeadInputError(f"{name} has dtype {tensor.dtype}, expected a {kind} tensor")


class MLPClassifier(nn.Module):
    """Tensor[..., in_channels] -> logits Tensor[..., num_classes]: fc1, ReLU, fc2, ReLU
    (width fc_width; kaiming-uniform with a=1, bias 0), dropout, linear (normal(0, 0.01),
    bias 0), as AlphAction's 2MLPFeatureExtractor and FCPredictor."""

    def __init__(self, *, in_channels: int, fc_width: int, num_classes: int,
                 dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_channels, fc_width)
        self.fc2 = nn.Linear(fc_width, fc_width)
        for layer in (self.fc1, self.fc2):
            nn.init.kaiming_uniform_(layer.weight, a=1)
            nn.init.zeros_(layer.bias)
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(fc_width, num_classes)
        nn.init.normal_(self.score.weight, std=0.01)
        nn.init.zeros_(self.score.bias)

    def forward(self, features: Tensor) -> Tensor:
        hidden = torch.relu(self.fc2(torch.relu(self.fc1(features))))
        return self.score(self.dropout(hidden))


class ActionHead(nn.Module):
    """fusion: a structure from FUSIONS; pose_part: a PosePartNetwork or None;
    fc_width, dropout: of the classifiers (MLPClassifier)."""

    def __init__(self, *, fusion: nn.Module, in_channels: int, num_classes: int,
                 dropout: float, fc_width: int, pose_part: PosePartNetwork | None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.fusion = fusion
        self.pose_part = pose_part
        self.classifier = MLPClassifier(in_channels=in_channels, fc_width=fc_width,
                                        num_classes=num_classes, dropout=dropout)
        self.fused_classifier = None
        if pose_part is not None:
            self.fused_classifier = MLPClassifier(
                in_channels=in_channels + pose_part.width, fc_width=fc_width,
                num_classes=num_classes, dropout=dropout)

    def forward(self, *, persons: Tensor, person_mask: Tensor, objects: Tensor,
                object_mask: Tensor, memory: Tensor, memory_mask: Tensor,
                memory_offset: Tensor, parts: Tensor | None = None,
                part_mask: Tensor | None = None) -> HeadOutput:
        """persons: Tensor[B, P, C], person_mask: Bool[B, P];
        objects: Tensor[B, O, C], object_mask: Bool[B, O];
        memory: Tensor[B, M, C], memory_mask: Bool[B, M], memory_offset: Long[B, M];
        parts: Tensor[B, P, 10, Cp], part_mask: Bool[B, P, 10] (Pose-Part only).
        """
        sets = self._checked_sets(persons, person_mask, objects, object_mask,
                                  memory, memory_mask, memory_offset)
        reasoned = sets.persons + self.fusion(sets)
        global_logits = self.classifier(reasoned)
        if self.pose_part is None:
            return HeadOutput(logits=self._unpad(global_logits, person_mask), global_logits=None)
        part_feature = self.pose_part(
            persons=sets.persons, person_mask=person_mask, objects=sets.objects,
            object_mask=object_mask, **self._checked_parts(parts, part_mask, person_mask))
        fused = torch.cat([reasoned, part_feature], dim=-1)
        fused_logits = self.fused_classifier(fused)
        return HeadOutput(logits=self._unpad(fused_logits, person_mask),
                          global_logits=self._unpad(global_logits, person_mask))

    @staticmethod
    def _unpad(logits: Tensor, person_mask: Tensor) -> Tensor:
        return zero_padded(logits, person_mask)

    def _checked_sets(self, persons, person_mask, objects, object_mask, memory,
                      memory_mask, memory_offset) -> KeyframeSets:
        _check("persons", persons, (None, None, self.in_channels), "float")
        batch, count = persons.shape[:2]
        _check("person_mask", person_mask, (batch, count), "bool")
        _check("objects", objects, (batch, None, self.in_channels), "float")
        _check("object_mask", object_mask, (batch, objects.shape[1]), "bool")
        _check("memory", memory, (batch, None, self.in_channels), "float")
        _check("memory_mask", memory_mask, (batch, memory.shape[1]), "bool")
        _check("memory_offset", memory_offset, (batch, memory.shape[1]), "int")
        sets = KeyframeSets(persons=persons, person_mask=person_mask, objects=objects,
                            object_mask=object_mask, memory=memory, memory_mask=memory_mask,
                            memory_offset=memory_offset)
        return sets.padded_to_zero()

    def _checked_parts(self, parts, part_mask, person_mask) -> dict[str, Tensor]:
        if parts is None or part_mask is None:
            raise HeadInputError("this head has a Pose-Part network: pass parts "
                                 "[B, P, 10, Cp] and part_mask [B, P, 10]")
        batch, count = person_mask.shape
        width = self.pose_part.part_projection.in_features
        _check("parts", parts, (batch, count, self.pose_part.num_parts, width), "float")
        _check("part_mask", part_mask, (batch, count, self.pose_part.num_parts), "bool")
        return {"parts": zero_padded(parts, part_mask & person_mask[..., None]),
                "part_mask": part_mask}


def uses_objects(*, fusion: str, pose_part: bool) -> bool:
    """Whether a head reads object features: every fusion but 'none' has an O
    block, and the Pose-Part network attends over the keyframe's objects."""
    return fusion != "none" or pose_part


# The build_head options the interaction blocks read, and those the Pose-Part network reads.
BLOCK_OPTIONS = ("padding", "attend_self", "memory_reader")
PART_OPTIONS = ("part_pooling",)
HEAD_OPTIONS = BLOCK_OPTIONS + PART_OPTIONS


def unused_options(*, fusion: str, pose_part: bool) -> tuple[str, ...]:
    """The build_head options a head of this structure does not read: heads that
    differ only in them are the same head. 'none' has no interaction block, and
    without Pose-Part nothing pools parts."""
    return (BLOCK_OPTIONS if fusion == "none" else ()) + (() if pose_part else PART_OPTIONS)


def build_head(*, fusion: str, pose_part: bool, in_channels: int, part_channels: int,
               num_classes: int, hidden: int, memory_span: int, dropout: float,
               memory_per_second: int = 1, fc_width: int = 1024, padding: str = "mask",
               attend_self: bool = False, part_pooling: str = "concat",
               memory_reader: str = "attention") -> ActionHead:
    """An ActionHead with the structure named fusion (a key of FUSIONS).

    in_channels: C of person / object / memory features; part_channels: Cp;
    hidden: width of every I-block's projections and of the part feature;
    memory_span: L, memory offsets lie in [-L, L] seconds; memory_per_second:
    K, the memory stage's cap per second; dropout: of the I-blocks, the
    reductions and the classifiers; fc_width: of the classifiers' two fully
    connected layers; padding, attend_self: how the blocks read the sets
    (``avapipe.models.sources``); part_pooling: how the Pose-Part network
    reduces the ten parts (``avapipe.models.pose_part.PART_POOLINGS``);
    memory_reader: the memory block (``avapipe.models.blocks.MEMORY_READERS``).
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; valid: {', '.join(FUSIONS)}")
    options = ContextOptions(memory_span=memory_span, memory_per_second=memory_per_second,
                             padding=padding, attend_self=attend_self,
                             memory_reader=memory_reader)
    structure = FUSIONS[fusion](channels=in_channels, hidden=hidden, dropout=dropout,
                                options=options)
    parts_network = None
    if pose_part:
        parts_network = PosePartNetwork(context_channels=in_channels,
                                        part_channels=part_channels, width=hidden,
                                        hidden=hidden, dropout=dropout, num_parts=NUM_PARTS,
                                        pooling=part_pooling)
    return ActionHead(fusion=structure, in_channels=in_channels, num_classes=num_classes,
                      dropout=dropout, fc_width=fc_width, pose_part=parts_network)
