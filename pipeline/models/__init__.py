"""Action heads on cached features: I-blocks, IA structures, Cube-Fusion, Pose-Part, losses."""

from avapipe.models.head import FUSIONS, ActionHead, HeadOutput, build_head, head_probabilities
from avapipe.models.interaction import HeadInputError, InteractionBlock, KeyframeSets
from avapipe.models.losses import ActionLoss, action_loss, class_probabilities, head_loss

__all__ = [
    "FUSIONS", "ActionHead", "ActionLoss", "HeadInputError", "HeadOutput", "InteractionBlock",
    "KeyframeSets", "action_loss", "build_head", "class_probabilities", "head_loss",
    "head_probabilities",
]
