"""What the interaction blocks read: the keyframe sets reduced to the blocks' width.

As in AlphAction's IA structure, every input first gets its own 1×1
projection to the block width d, followed by dropout: the person queries
(its ``person_dim_reduce``), the person keys (``person_key_dim_reduce``), the
objects (``object_dim_reduce``) and the memory (``mem_dim_reduce``). Only the
sources a structure uses get a projection.

Two choices differ between AlphAction and a masked design; both are options
(``ContextOptions``):

- padding: ``"attend"`` is AlphAction's: each set is padded to a fixed size
  (25 persons, 5 objects, ``memory_per_second`` features for each second of
  the memory window) with zero features, and the padded slots take part in
  the softmax. Object and memory slots are padded before their projection
  (so they carry its bias), person keys after it (zeros), as there. More
  real slots than the size are all kept (AlphAction samples them).
  ``"mask"`` removes padded slots from the softmax, so a person's result does
  not depend on how many slots of its keyframe are empty.
- attend_self: AlphAction's person block has the query person among its keys
  (True); False lets each person attend only the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avapipe.models.blocks import check_memory_reader
from avapipe.models.interaction import (HeadInputError, InteractionBlock, KeyframeSets,
                                        check_offsets, normal_init, zero_padded)

PADDINGS = ("mask", "attend")
PERSON_SLOTS = 25  # AlphAction's MAX_PERSON
OBJECT_SLOTS = 5  # AlphAction's MAX_OBJECT


@dataclass(frozen=True)
class ContextOptions:
    """How the sets are read. memory_span: L, offsets lie in [-L, L] seconds;
    memory_per_second: K, the most memory features per second (the memory
    stage's cap); padding: one of PADDINGS; attend_self: see the module docstring;
    memory_reader: the memory block (a key of ``avapipe.models.blocks.MEMORY_READERS``)."""

    memory_span: int = 0
    memory_per_second: int = 1
    padding: str = "mask"
    attend_self: bool = False
    memory_reader: str = "attention"

    def __post_init__(self) -> None:
        if self.padding not in PADDINGS:
            raise ValueError(f"padding {self.padding!r} unknown; valid: {', '.join(PADDINGS)}")
        check_memory_reader(self.memory_reader)
        if self.memory_span < 0 or self.memory_per_second < 1:
            raise ValueError(f"memory_span={self.memory_span} must be >= 0 and "
                             f"memory_per_second={self.memory_per_second} >= 1")


@dataclass(frozen=True)
class BlockInputs:
    """The reduced sets of B keyframes, width d.

    query: Tensor[B, P, d], the persons as queries; person_mask: Bool[B, P].
    person_keys: Tensor[B, Pk, d], the persons as keys of the first person
        block (Pk = P, or the fixed size with padding 'attend').
    person_key_slots: Bool[B, Pk], the key slots that take part.
    objects: Tensor[B, O, d], object_mask: Bool[B, O];
    memory: Tensor[B, M, d], memory_mask: Bool[B, M], memory_offset: Long[B, M].
    attend_self: whether a person is among its own keys.
    """

    query: Tensor
    person_mask: Tensor
    person_keys: Tensor
    person_key_slots: Tensor
    objects: Tensor
    object_mask: Tensor
    memory: Tensor
    memory_mask: Tensor
    memory_offset: Tensor
    attend_self: bool

    def keys_of(self, state: Tensor) -> Tensor:
        """state: Tensor[B, P, d], the persons' current states -> Tensor[B, Pk, d]:
        the same as person keys, zero at padded persons and beyond."""
        state = zero_padded(state, self.person_mask)
        return F.pad(state, (0, 0, 0, self.person_keys.shape[1] - state.shape[1]))

    def person_attend(self) -> Tensor:
        """Bool[B, P, Pk]: which key slots each query person attends."""
        count, slots = self.person_mask.shape[1], self.person_key_slots.shape[1]
        attend = self.person_key_slots[:, None, :].expand(-1, count, -1)
        if self.attend_self:
            return attend
        itself = torch.eye(count, slots, dtype=torch.bool, device=attend.device)
        return attend & ~itself


def attend_source(block: InteractionBlock, source: str, state: Tensor, inputs: BlockInputs,
                  *, first: bool) -> Tensor:
    """Run block with state: Tensor[B, P, d] as query over one source.

    'P' attends over the persons: the reduced person keys for the first block
    of a chain (first=True), else the persons' current states (``state``
    itself), as AlphAction's structures pass them on; 'O' over the objects,
    'M' over the memory (with its offsets).
    """
    if source == "P":
        keys = inputs.person_keys if first else inputs.keys_of(state)
        return block(state, keys, inputs.person_attend())
    if source == "O":
        return block(state, inputs.objects, inputs.object_mask)
    if source == "M":
        return block(state, inputs.memory, inputs.memory_mask, positions=inputs.memory_offset)
    raise ValueError(f"unknown interaction source {source!r}; valid: P, O, M")


def memory_layout(memory: Tensor, mask: Tensor, offset: Tensor, *, span: int,
                  per_second: int) -> tuple[Tensor, Tensor]:
    """AlphAction's memory layout: per_second slots for each second of [-span, span].

    memory: Tensor[B, M, C], mask: Bool[B, M], offset: Long[B, M].
    Returns (Tensor[B, S·K, C], Long[B, S·K]) with S = 2·span + 1, K =
    per_second: slot s·K + r holds the r-th real feature at second s - span,
    zeros where a second has fewer; the offsets of every slot.
    """
    check_offsets(offset, mask, span)
    batch, _, channels = memory.shape
    seconds = 2 * span + 1
    second = offset.masked_fill(~mask, 0) + span
    counts = (F.one_hot(second, seconds) * mask[..., None]).cumsum(dim=1)
    rank = counts.gather(2, second[..., None])[..., 0] - 1
    if (rank[mask] >= per_second).any():
        b, j = torch.nonzero(mask & (rank >= per_second))[0].tolist()
        raise HeadInputError(
            f"keyframe {b} has more than {per_second} memory features at second "
            f"{int(offset[b, j])}; pass memory_per_second = the memory stage's per_second")
    laid = memory.new_zeros(batch, seconds * per_second, channels)
    rows = torch.nonzero(mask)
    laid[rows[:, 0], (second * per_second + rank)[mask]] = memory[mask]
    offsets = torch.arange(seconds, device=memory.device).repeat_interleave(per_second) - span
    return laid, offsets.expand(batch, -1)


def _padded_to(features: Tensor, slots: int) -> Tensor:
    """Tensor[B, N, C] -> Tensor[B, max(N, slots), C], zero rows appended."""
    return F.pad(features, (0, 0, 0, max(0, slots - features.shape[1])))


def _all_slots(features: Tensor) -> Tensor:
    return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)


class SourceReducer(nn.Module):
    """The 1×1 projections (+ dropout) of the person query and of each used source.

    channels: C of person / object / memory features; hidden: d;
    sources: the letters of the sources the structure reads (subset of 'POM').
    """

    def __init__(self, *, channels: int, hidden: int, dropout: float, sources: str,
                 options: ContextOptions) -> None:
        super().__init__()
        self.options = options
        self.query = normal_init(nn.Linear(channels, hidden))
        self.reduce = nn.ModuleDict({source: normal_init(nn.Linear(channels, hidden))
                                     for source in "POM" if source in sources})
        self.dropout = nn.Dropout(dropout)

    def forward(self, sets: KeyframeSets) -> BlockInputs:
        """sets: padded to zero (``KeyframeSets.padded_to_zero``) -> BlockInputs."""
        attend = self.options.padding == "attend"
        objects, object_mask = sets.objects, sets.object_mask
        memory, memory_mask, offset = sets.memory, sets.memory_mask, sets.memory_offset
        if attend and "O" in self.reduce:
            objects = _padded_to(objects, OBJECT_SLOTS)
            object_mask = _all_slots(objects)
        if attend and "M" in self.reduce:
            memory, offset = memory_layout(memory, memory_mask, offset,
                                           span=self.options.memory_span,
                                           per_second=self.options.memory_per_second)
            memory_mask = _all_slots(memory)
        person_keys = self._reduced("P", sets.persons)
        person_keys = _padded_to(zero_padded(person_keys, sets.person_mask),
                                 PERSON_SLOTS if attend else 0)
        return BlockInputs(
            query=self.dropout(self.query(sets.persons)), person_mask=sets.person_mask,
            person_keys=person_keys,
            person_key_slots=_all_slots(person_keys) if attend else sets.person_mask,
            objects=self._reduced("O", objects), object_mask=object_mask,
            memory=self._reduced("M", memory), memory_mask=memory_mask, memory_offset=offset,
            attend_self=self.options.attend_self)

    def _reduced(self, source: str, features: Tensor) -> Tensor:
        if source not in self.reduce:  # a source the structure never reads
            return features.new_zeros(features.shape[:2] + (self.query.out_features,))
        return self.dropout(self.reduce[source](features))
