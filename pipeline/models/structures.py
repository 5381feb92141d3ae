"""AlphAction's interaction-aggregation (IA) structures over P, O and M blocks.

Every structure maps KeyframeSets to the persons' interaction feature,
Tensor[B, P, C], which the head adds to the person feature (AlphAction's
``FUSION: "add"``). They are built with the same keyword arguments
(channels, hidden, dropout, options) so that a plain dict can choose one by
name. As in AlphAction's IA_structure.py, the inputs are first reduced to the
block width d (``avapipe.models.sources``), the blocks work at d, and the
last block of each chain maps to C through its shortcut projection. With the
blocks' output projections at zero, a new structure ignores every context:
its output is a projection of the person's own feature.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from avapipe.models.blocks import make_block
from avapipe.models.interaction import SOURCES, KeyframeSets
from avapipe.models.sources import ContextOptions, SourceReducer, attend_source

SERIAL_ORDER = "POMPOM"
DENSE_INIT = -5 * math.log(10)  # mix logit of every output but the latest (AlphAction)


def check_order(order: str) -> str:
    unknown = sorted(set(order) - set(SOURCES))
    if not order or unknown:
        raise ValueError(f"block order {order!r} must be a non-empty string of "
                         f"{', '.join(SOURCES)} (persons, objects, memory)")
    return order


def chain_blocks(order: str, *, channels: int, hidden: int, dropout: float,
                 options: ContextOptions) -> nn.ModuleList:
    """One block per letter of order, width hidden; the last one outputs channels."""
    last = len(order) - 1
    return nn.ModuleList(
        make_block(source, hidden=hidden, out_channels=channels if index == last else hidden,
                   dropout=dropout, memory_span=options.memory_span,
                   memory_reader=options.memory_reader)
        for index, source in enumerate(order))


class NoInteraction(nn.Module):
    """'none': no interaction feature (zeros), so the head reads the person feature alone."""

    def __init__(self, *, channels: int, hidden: int, dropout: float,
                 options: ContextOptions) -> None:
        super().__init__()

    def forward(self, sets: KeyframeSets) -> Tensor:
        """sets -> Tensor[B, P, C] of zeros."""
        return torch.zeros_like(sets.persons)


class SerialStructure(nn.Module):
    """'serial': blocks in a chain, each reading the previous block's output.

    order: one letter per block, 'P', 'O' or 'M' (default POMPOM, AlphAction's).
    """

    def __init__(self, *, channels: int, hidden: int, dropout: float,
                 options: ContextOptions, order: str = SERIAL_ORDER) -> None:
        super().__init__()
        self.order = check_order(order)
        self.sources = SourceReducer(channels=channels, hidden=hidden, dropout=dropout,
                                     sources=self.order, options=options)
        self.blocks = chain_blocks(self.order, channels=channels, hidden=hidden,
                                   dropout=dropout, options=options)

    def forward(self, sets: KeyframeSets) -> Tensor:
        """sets -> Tensor[B, P, C]."""
        inputs = self.sources(sets)
        state = inputs.query
        for index, (source, block) in enumerate(zip(self.order, self.blocks)):
            state = attend_source(block, source, state, inputs, first=index == 0)
        return state


class DenseSerialStructure(SerialStructure):
    """'dense': AlphAction's dense serial structure.

    Block i >= 2 reads a learned mix of the outputs of blocks 0..i-1: per
    channel, softmax weights over those outputs. The logits start at
    -5·ln 10 except the latest output's at 0, so a new structure reads
    (to a weight of 1e-5 per older output) the latest output, as serial does.
    Blocks 0 and 1 read the reduced person feature and block 0's output.
    """

    def __init__(self, *, channels: int, hidden: int, dropout: float,
                 options: ContextOptions, order: str = SERIAL_ORDER) -> None:
        super().__init__(channels=channels, hidden=hidden, dropout=dropout, options=options,
                         order=order)
        self.mix_logits = nn.ParameterList(
            nn.Parameter(self._initial_logits(index, hidden)) for index in range(2, len(order)))

    @staticmethod
    def _initial_logits(index: int, hidden: int) -> Tensor:
        logits = torch.full((index, hidden), DENSE_INIT)
        logits[index - 1] = 0.0
        return logits

    def forward(self, sets: KeyframeSets) -> Tensor:
        """sets -> Tensor[B, P, C], the last block's output."""
        inputs = self.sources(sets)
        state, history = inputs.query, []
        for index, (source, block) in enumerate(zip(self.order, self.blocks)):
            if index >= 2:
                state = self.mix(index, history)
            state = attend_source(block, source, state, inputs, first=index == 0)
            history.append(state)
        return state

    def mix(self, index: int, history: list[Tensor]) -> Tensor:
        """The query of block index >= 2: Tensor[B, P, d] from the earlier outputs."""
        weights = torch.softmax(self.mix_logits[index - 2], dim=0)
        return sum(weight * output for weight, output in zip(weights, history))


class ParallelStructure(nn.Module):
    """'parallel': AlphAction's parallel structure, I_BLOCK_LIST [[P, O, M], [P, O, M]].

    One branch per source of order, each a chain of ``layers`` blocks of that
    source starting from the reduced person feature (the P branch's later
    blocks attend over its own earlier output); the output is the sum of the
    branches' outputs (each through its last block's shortcut).
    """

    def __init__(self, *, channels: int, hidden: int, dropout: float,
                 options: ContextOptions, order: str = "POM", layers: int = 2) -> None:
        super().__init__()
        self.order = check_order(order)
        if layers < 1:
            raise ValueError(f"layers={layers}; a parallel structure needs >= 1 layer")
        self.sources = SourceReducer(channels=channels, hidden=hidden, dropout=dropout,
                                     sources=self.order, options=options)
        self.branches = nn.ModuleList(
            chain_blocks(source * layers, channels=channels, hidden=hidden, dropout=dropout,
                         options=options) for source in self.order)

    def forward(self, sets: KeyframeSets) -> Tensor:
        """sets -> Tensor[B, P, C]."""
        inputs = self.sources(sets)
        outputs = []
        for source, branch in zip(self.order, self.branches):
            state = inputs.query
            for index, block in enumerate(branch):
                state = attend_source(block, source, state, inputs, first=index == 0)
            outputs.append(state)
        return sum(outputs)
