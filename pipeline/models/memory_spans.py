"""A memory reader that keeps when each memory feature was seen: span pooling.

AlphAction's memory block is an I-block whose keys and values carry a learned
embedding of their second; to answer "did this person lie on the floor 4 to
8 seconds ago" it has to learn from the data which seconds to attend. The
span reader (``train.memory_reader: spans``) is told instead: it splits the
memory window into spans of seconds relative to the keyframe (``SPAN_EDGES``:
long before, before, just before, the keyframe's own second, just after,
after, long after) and summarises each span by the mean and the max of its
features and a flag for "the span is empty" (LFB's average and max pooling,
per span). The summaries side by side are projected to the block width, and
the rest is the I-block's: LayerNorm without affine parameters, ReLU, an
output projection initialised at zero, dropout, and a residual sum through
the same shortcut. It reads no query, so every person of a keyframe gets the
same update from the memory — what ``avapipe probe`` gives its linear probe.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avapipe.models.interaction import (INIT_STD, HeadInputError, check_offsets, normal_init,
                                        shortcut_projection, zero_padded)

# Upper edges (seconds from the keyframe, inclusive) of the memory spans; the
# last span takes everything after the last edge.
SPAN_EDGES = (-11, -4, -1, 0, 3, 10)
NUM_SPANS = len(SPAN_EDGES) + 1


def span_index(offsets: Tensor) -> Tensor:
    """offsets: Long[...] seconds from the keyframe -> Long[...] span in [0, NUM_SPANS)."""
    edges = torch.tensor(SPAN_EDGES, dtype=offsets.dtype, device=offsets.device)
    return torch.searchsorted(edges, offsets.contiguous(), right=False)


def span_summaries(context: Tensor, used: Tensor, offsets: Tensor) -> Tensor:
    """context: Tensor[B, K, d]; used: Bool[B, K]; offsets: Long[B, K] ->
    Tensor[B, NUM_SPANS · (2d + 1)]: per span the mean and the max over its
    used slots and 1.0 if it has none (then mean and max are 0)."""
    member = (span_index(offsets)[..., None] == torch.arange(NUM_SPANS, device=context.device))
    member = member & used[..., None]  # [B, K, S]
    count = member.sum(dim=1)  # [B, S]
    weights = member.to(context.dtype) / count.clamp(min=1)[:, None, :]
    mean = weights.transpose(1, 2) @ context  # [B, S, d]
    lowest = torch.finfo(context.dtype).min
    spread = context[:, :, None, :].masked_fill(~member[..., None], lowest)
    largest = spread.amax(dim=1).masked_fill((count == 0)[..., None], 0.0)
    empty = (count == 0).to(context.dtype)[..., None]
    return torch.cat([mean, largest, empty], dim=-1).flatten(1)


class SpanPoolingBlock(nn.Module):
    """The memory as per-span summaries, added to the query like an I-block's update.

    channels: width of the query; context_channels: of the memory (default
    channels); hidden: d, width of the projected summaries; out_channels:
    of the output (default channels; a different width passes the query
    through a shortcut projection); dropout: on the update; position_span: L,
    memory offsets must lie in [-L, L].
    """

    def __init__(self, *, channels: int, context_channels: int | None = None,
                 hidden: int = 1024, out_channels: int | None = None, dropout: float = 0.2,
                 position_span: int = 0) -> None:
        super().__init__()
        context_channels = channels if context_channels is None else context_channels
        out_channels = channels if out_channels is None else out_channels
        self.hidden = hidden
        self.position_span = position_span
        self.summary = normal_init(nn.Linear(NUM_SPANS * (2 * context_channels + 1), hidden),
                                   std=INIT_STD)
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.out = normal_init(nn.Linear(hidden, out_channels), std=0.0)
        self.shortcut = shortcut_projection(channels, out_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, context: Tensor, attend: Tensor,
                positions: Tensor | None = None) -> Tensor:
        """query: Tensor[B, Q, C]; context: Tensor[B, K, Cc]; attend: Bool[B, K]
        or Bool[B, Q, K] (a slot counts if any query attends it); positions:
        Long[B, K] relative seconds. Returns Tensor[B, Q, out_channels]; a
        keyframe without memory gets an update of exactly zero."""
        if positions is None:
            raise HeadInputError("the span reader needs positions (memory_offset, relative seconds)")
        used = attend if attend.dim() == 2 else attend.any(dim=1)
        check_offsets(positions, used, self.position_span)
        summaries = span_summaries(zero_padded(context, used), used, positions)
        update = self.out(torch.relu(self.norm(self.summary(summaries))))[:, None, :]
        has_memory = used.any(dim=1)[:, None, None]
        residual = query if self.shortcut is None else self.shortcut(query)
        return residual + self.dropout(update) * has_memory
