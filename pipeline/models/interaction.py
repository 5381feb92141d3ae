"""The interaction (I-) block and the padded keyframe sets the heads read.

An I-block lets every person (the query) gather information from a set of
other entities (the context): other persons of the keyframe (P), objects (O)
or the long-term memory of the video (M). It is AlphAction's block
(``InteractionBlock`` of its IA_structure.py): 1×1 projections of query, keys
and values to a hidden width d, softmax(q kᵀ / √d) over the keys, LayerNorm
without affine parameters, ReLU, an output projection initialised at zero,
dropout, and a residual sum; when the output width differs from the query
width the residual goes through a projection (the shortcut). Projections
start as normal(0, 0.01) with zero bias, as there.

Which slots take part in the softmax is the caller's choice (``attend``):
``avapipe.models.sources`` builds the sets either with padded slots masked
out or, as AlphAction does, padded to a fixed size with zero features that
take part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

SOURCES = ("P", "O", "M")
INIT_STD = 0.01  # AlphAction's CONV_INIT_STD


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


def check_offsets(positions: Tensor, used: Tensor, span: int) -> None:
    """Raises HeadInputError unless positions: Long[B, K] lie in [-span, span] where used."""
    outside = used & (positions.abs() > span)
    if outside.any():
        bad = tuple(torch.nonzero(outside)[0].tolist())
        raise HeadInputError(
            f"memory_offset{list(bad)} = {int(positions[bad])} is outside "
            f"[-{span}, {span}]; drop memory features further than memory_span "
            "seconds from the keyframe or raise memory_span")


def normal_init(layer: nn.Linear, std: float = INIT_STD) -> nn.Linear:
    """AlphAction's init_layer: weights normal(0, std) (zeros for std 0), bias 0."""
    nn.init.normal_(layer.weight, std=std) if std > 0 else nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def shortcut_projection(channels: int, out_channels: int) -> nn.Linear | None:
    """The residual's projection for a block that changes width (None: the identity)."""
    return None if out_channels == channels else normal_init(nn.Linear(channels, out_channels))


class InteractionBlock(nn.Module):
    """One I-block: query features attend over a context set; the result is added.

    channels: width of the query. context_channels: of the context (default channels).
    hidden: d, width of the query/key/value projections.
    out_channels: width of the output (default channels); when it differs
        from channels the residual passes a shortcut projection.
    dropout: on the update before the residual sum.
    position_span: L; when given, a learned embedding per relative second in
        [-L, L] is added to the projected keys and to the projected values
        (memory features); both start at zero.
    The output projection starts at zero, so a new block returns its
    (shortcut-projected) query whatever the context.
    """

    def __init__(self, *, channels: int, context_channels: int | None = None,
                 hidden: int = 1024, out_channels: int | None = None, dropout: float = 0.2,
                 position_span: int | None = None) -> None:
        super().__init__()
        context_channels = channels if context_channels is None else context_channels
        out_channels = channels if out_channels is None else out_channels
        self.hidden = hidden
        self.position_span = position_span
        self.query = normal_init(nn.Linear(channels, hidden))
        # A key bias adds the same score q·b to every key of a query, which the softmax ignores.
        self.key = normal_init(nn.Linear(context_channels, hidden, bias=False))
        self.value = normal_init(nn.Linear(context_channels, hidden))
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.out = normal_init(nn.Linear(hidden, out_channels), std=0.0)
        self.shortcut = shortcut_projection(channels, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.key_positions = self.value_positions = None
        if position_span is not None:
            self.key_positions = nn.Parameter(torch.zeros(2 * position_span + 1, hidden))
            self.value_positions = nn.Parameter(torch.zeros(2 * position_span + 1, hidden))

    def forward(self, query: Tensor, context: Tensor, attend: Tensor,
                positions: Tensor | None = None) -> Tensor:
        """query: Tensor[B, Q, C]; context: Tensor[B, K, Cc];
        attend: Bool[B, K] (same keys for every query) or Bool[B, Q, K];
        positions: Long[B, K] relative seconds, required iff position_span is set.
        Returns Tensor[B, Q, out_channels]: (shortcut of) query + update; a
        query with no key to attend gets an update of exactly zero.
        """
        if attend.dim() == 2:
            attend = attend[:, None, :].expand(-1, query.shape[1], -1)
        used_slot = attend.any(dim=1)
        context = zero_padded(context, used_slot)
        keys, values = self.key(context), self.value(context)
        if self.key_positions is not None:
            index = self._position_index(positions, used_slot)
            keys, values = keys + self.key_positions[index], values + self.value_positions[index]
        logits = self.query(query) @ keys.transpose(1, 2) / math.sqrt(self.hidden)
        weights = masked_attention_weights(logits, attend)
        update = self.out(torch.relu(self.norm(weights @ values)))
        has_key = attend.any(dim=-1, keepdim=True)
        residual = query if self.shortcut is None else self.shortcut(query)
        return residual + self.dropout(update) * has_key

    def _position_index(self, positions: Tensor | None, used_slot: Tensor) -> Tensor:
        if positions is None:
            raise HeadInputError("this block has position embeddings: pass positions "
                                 "(memory_offset, relative seconds)")
        check_offsets(positions, used_slot, self.position_span)
        return positions.masked_fill(~used_slot, 0) + self.position_span

