"""The interaction (I-) block and the padded keyframe sets it reads.

An I-block lets every person (the query) gather information from a set of
other entities (the context): other persons of the keyframe (P), objects (O)
or the long-term memory of the video (M). It follows AlphAction's block
(projections to a hidden width d, softmax(q kᵀ / √d), LayerNorm, ReLU,
zero-initialised output projection, dropout, residual) with one change:
padded context slots are removed from the softmax instead of taking part in
it, so a batch's padding never changes a person's result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

SOURCES = ("P", "O", "M")


class HeadInputError(ValueError):
    """A head input has the wrong shape, dtype or value range."""


@dataclass(frozen=True)
class KeyframeSets:
    """The padded sets of one batch of B keyframes (True in a mask = real slot).

    persons: Tensor[B, P, C]; person_mask: Bool[B, P]
    objects: Tensor[B, O, C]; object_mask: Bool[B, O]
    memory: Tensor[B, M, C]; memory_mask: Bool[B, M]
    memory_offset: Long[B, M], the second of each memory feature relative to
        the keyframe, in [-memory_span, memory_span] at real slots.
    Features at padded slots are set to zero by `padded_to_zero`, so that
    not even NaN in padding can reach a result.
    """

    persons: Tensor
    person_mask: Tensor
    objects: Tensor
    object_mask: Tensor
    memory: Tensor
    memory_mask: Tensor
    memory_offset: Tensor

    def padded_to_zero(self) -> KeyframeSets:
        """The same sets with every padded feature slot (and offset) set to 0."""
        return KeyframeSets(
            persons=zero_padded(self.persons, self.person_mask),
            person_mask=self.person_mask,
            objects=zero_padded(self.objects, self.object_mask),
            object_mask=self.object_mask,
            memory=zero_padded(self.memory, self.memory_mask),
            memory_mask=self.memory_mask,
            memory_offset=self.memory_offset.masked_fill(~self.memory_mask, 0),
        )


def zero_padded(features: Tensor, mask: Tensor) -> Tensor:
    """features: Tensor[..., N, C], mask: Bool[..., N] -> features, 0 where mask is False."""
    return features.masked_fill(~mask[..., None], 0.0)


def masked_attention_weights(logits: Tensor, attend: Tensor) -> Tensor:
    """Softmax over the last axis of logits: Tensor[B, Q, K] restricted to attend: Bool[B, Q, K].

    Entries outside attend get weight exactly 0; a row with no True entry gets
    all-zero weights instead of NaN.
    """
    lowest = torch.finfo(logits.dtype).min
    weights = torch.softmax(logits.masked_fill(~attend, lowest), dim=-1)
    return weights * attend


def others_mask(person_mask: Tensor) -> Tensor:
    """person_mask: Bool[B, P] -> Bool[B, P, P]: query i may attend key j (j real, j != i)."""
    count = person_mask.shape[1]
    not_self = ~torch.eye(count, dtype=torch.bool, device=person_mask.device)
    return person_mask[:, None, :] & not_self


class InteractionBlock(nn.Module):
    """One I-block: query features attend over a context set and add the result.

    channels: C, width of the query (and of the output).
    context_channels: width of the context features (default C).
    hidden: d, width of the query/key/value projections.
    dropout: dropout on the update before the residual sum.
    position_span: L; when given, a learned embedding per relative second in
        [-L, L] is added to the keys (memory features).
    The output projection starts at zero, so a new block is the identity.
    """

    def __init__(self, *, channels: int, context_channels: int | None = None,
                 hidden: int = 1024, dropout: float = 0.2,
                 position_span: int | None = None) -> None:
        super().__init__()
        context_channels = channels if context_channels is None else context_channels
        self.hidden = hidden
        self.position_span = position_span
        self.query = nn.Linear(channels, hidden)
        # A key bias would add the same score to every key, which the softmax ignores.
        self.key = nn.Linear(context_channels, hidden, bias=False)
        self.value = nn.Linear(context_channels, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.dropout = nn.Dropout(dropout)
        self.positions = None
        if position_span is not None:
            self.positions = nn.Embedding(2 * position_span + 1, hidden)

    def forward(self, query: Tensor, context: Tensor, attend: Tensor,
                positions: Tensor | None = None) -> Tensor:
        """query: Tensor[B, Q, C]; context: Tensor[B, K, Cc];
        attend: Bool[B, K] (same keys for every query) or Bool[B, Q, K];
        positions: Long[B, K] relative seconds, required iff position_span is set.
        Returns Tensor[B, Q, C]: query + update; a query with no key to attend
        gets an update of exactly zero.
        """
        if attend.dim() == 2:
            attend = attend[:, None, :].expand(-1, query.shape[1], -1)
        used_slot = attend.any(dim=1)
        context = zero_padded(context, used_slot)
        keys = self.key(context)
        if self.positions is not None:
            keys = keys + self.positions(self._position_index(positions, used_slot))
        logits = self.query(query) @ keys.transpose(1, 2) / math.sqrt(self.hidden)
        weights = masked_attention_weights(logits, attend)
        gathered = weights @ self.value(context)
        update = self.out(torch.relu(self.norm(gathered)))
        has_key = attend.any(dim=-1, keepdim=True)
        return query + self.dropout(update) * has_key

    def _position_index(self, positions: Tensor | None, used_slot: Tensor) -> Tensor:
        span = self.position_span
        if positions is None:
            raise HeadInputError("this block has position embeddings: pass positions "
                                 "(memory_offset, relative seconds)")
        positions = positions.masked_fill(~used_slot, 0)
        if positions.numel() and (positions.abs().max() > span):
            bad = tuple(torch.nonzero(positions.abs() > span)[0].tolist())
            raise HeadInputError(
                f"memory_offset{list(bad)} = {int(positions[bad])} is outside "
                f"[-{span}, {span}]; drop memory features further than memory_span "
                "seconds from the keyframe or raise memory_span")
        return positions + span


def make_block(source: str, *, channels: int, hidden: int, dropout: float,
               memory_span: int) -> InteractionBlock:
    """An I-block for one source: 'P' persons, 'O' objects, 'M' memory (with positions)."""
    if source not in SOURCES:
        raise ValueError(f"unknown interaction source {source!r}; valid: {', '.join(SOURCES)}")
    span = memory_span if source == "M" else None
    return InteractionBlock(channels=channels, hidden=hidden, dropout=dropout,
                            position_span=span)


def attend_source(block: InteractionBlock, source: str, state: Tensor,
                  sets: KeyframeSets) -> Tensor:
    """Run block with state: Tensor[B, P, C] as query over one source of sets.

    'P' attends over the current states of the OTHER real persons of the
    keyframe, 'O' over the objects, 'M' over the memory (with its offsets).
    """
    if source == "P":
        return block(state, state, others_mask(sets.person_mask))
    if source == "O":
        return block(state, sets.objects, sets.object_mask)
    if source == "M":
        return block(state, sets.memory, sets.memory_mask, positions=sets.memory_offset)
    raise ValueError(f"unknown interaction source {source!r}; valid: {', '.join(SOURCES)}")
