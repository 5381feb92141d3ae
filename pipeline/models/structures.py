"""AlphAction's interaction-aggregation (IA) structures over P, O and M blocks.

Every structure maps KeyframeSets to the persons' reasoned features,
Tensor[B, P, C], and is built with the same keyword arguments
(channels, hidden, memory_span, dropout) so that a plain dict can choose one
by name. All blocks start as the identity (zero-initialised output
projections), so every structure starts by returning the person features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avapipe.models.interaction import SOURCES, KeyframeSets, attend_source, make_block

SERIAL_ORDER = "POMPOM"


def _check_order(order: str) -> str:
    unknown = sorted(set(order) - set(SOURCES))
    if not order or unknown:
        raise ValueError(f"block order {order!r} must be a non-empty string of "
                         f"{', '.join(SOURCES)} (persons, objects, memory)")
    return order


class NoInteraction(nn.Module):
    """'none': the person feature alone; the block arguments are accepted and unused."""

    def __init__(self, *, channels: int, hidden: int, memory_span: int,
                 dropout: float) -> None:
        super().__init__()

    def forward(self, sets: KeyframeSets) -> Tensor:
        """sets -> Tensor[B, P, C], the person features unchanged."""
        return sets.persons


class SerialStructure(nn.Module):
    """'serial': blocks in a chain, each reading the previous block's output.

    order: one letter per block, 'P', 'O' or 'M' (default POMPOM, AlphAction's).
    """

    def __init__(self, *, channels: int, hidden: int, memory_span: int,
                 dropout: float, order: str = SERIAL_ORDER) -> None:
        super().__init__()
        self.order = _check_order(order)
        self.blocks = nn.ModuleList(
            make_block(source, channels=channels, hidden=hidden, dropout=dropout,
                       memory_span=memory_span)
            for source in self.order)

    def forward(self, sets: KeyframeSets) -> Tensor:
        """sets -> Tensor[B, P, C]."""
        state = sets.persons
        for source, block in zip(self.order, self.blocks):
            state = attend_source(block, source, state, sets)
        return state


class DenseSerialStructure(SerialStructure):
    """'dense': AlphAction's dense serial structure.

    Block i (i >= 1) reads a learned softmax-weighted sum of all earlier
    outputs: the person features and the outputs of blocks 0..i-1. The weights
    start equal. Block 0 has only the person features to read, so it has no
    weights (a softmax over one entry could never learn).
    """

    def __init__(self, *, channels: int, hidden: int, memory_span: int,
                 dropout: float, order: str = SERIAL_ORDER) -> None:
        super().__init__(channels=channels, hidden=hidden, memory_span=memory_span,
                         dropout=dropout, order=order)
        self.mix_logits = nn.ParameterList(
            nn.Parameter(torch.zeros(index + 1)) for index in range(1, len(self.order)))

    def forward(self, sets: KeyframeSets) -> Tensor:
        """sets -> Tensor[B, P, C], the last block's output."""
        outputs = [sets.persons]
        for index, (source, block) in enumerate(zip(self.order, self.blocks)):
            query = outputs[0] if index == 0 else self._mix(index, outputs)
            outputs.append(attend_source(block, source, query, sets))
        return outputs[-1]

    def _mix(self, index: int, outputs: list[Tensor]) -> Tensor:
        weights = torch.softmax(self.mix_logits[index - 1], dim=0)
        return sum(weight * output for weight, output in zip(weights, outputs))


class ParallelStructure(SerialStructure):
    """'parallel': independent P, O and M blocks on the person features, summed.

    Each branch is a residual block; the output is the person feature plus
    the sum of the branches' updates (not the sum of their outputs, which
    would count the person feature three times).
    """

    def __init__(self, *, channels: int, hidden: int, memory_span: int,
                 dropout: float, order: str = "POM") -> None:
        super().__init__(channels=channels, hidden=hidden, memory_span=memory_span,
                         dropout=dropout, order=order)

    def forward(self, sets: KeyframeSets) -> Tensor:
        """sets -> Tensor[B, P, C]."""
        persons = sets.persons
        updates = [attend_source(block, source, persons, sets) - persons
                   for source, block in zip(self.order, self.blocks)]
        return persons + sum(updates)
