"""One block per source, built by name: the I-block for persons and objects,
the memory reader that ``train.memory_reader`` names for the memory."""

from __future__ import annotations

from torch import nn

from avapipe.models.interaction import SOURCES, InteractionBlock
from avapipe.models.memory_spans import SpanPoolingBlock

# attention: AlphAction's memory block (an I-block with per-second position
# embeddings); spans: per-span mean / max summaries (avapipe.models.memory_spans).
MEMORY_READERS = {"attention": InteractionBlock, "spans": SpanPoolingBlock}


def check_memory_reader(name: str) -> str:
    if name not in MEMORY_READERS:
        raise ValueError(f"memory_reader {name!r} unknown; valid: {', '.join(MEMORY_READERS)}")
    return name


def make_block(source: str, *, hidden: int, out_channels: int, dropout: float,
               memory_span: int, memory_reader: str = "attention") -> nn.Module:
    """A block for one source ('P' persons, 'O' objects, 'M' memory, read by
    memory_reader with offsets in [-memory_span, memory_span]) that works at
    width hidden and outputs out_channels."""
    if source not in SOURCES:
        raise ValueError(f"unknown interaction source {source!r}; valid: {', '.join(SOURCES)}")
    if source != "M":
        return InteractionBlock(channels=hidden, hidden=hidden, out_channels=out_channels,
                                dropout=dropout)
    reader = MEMORY_READERS[check_memory_reader(memory_reader)]
    return reader(channels=hidden, hidden=hidden, out_channels=out_channels, dropout=dropout,
                  position_span=memory_span)
