import numpy as np
import pytest
import torch

from avapipe.evaluation.probe_features import memory_summary
from avapipe.models.blocks import MEMORY_READERS, make_block
from avapipe.models.interaction import HeadInputError, InteractionBlock
from avapipe.models.memory_spans import (NUM_SPANS, SPAN_EDGES, SpanPoolingBlock, span_index,
                                         span_summaries)

D, SPAN = 4, 30


def perturbed(block, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        block.out.weight.copy_(torch.randn(block.out.weight.shape, generator=generator))
    return block.eval()


def test_spans_split_at_the_edges():
    offsets = torch.tensor([-30, -11, -10, -4, -3, -1, 0, 1, 3, 4, 10, 11, 30])
    assert span_index(offsets).tolist() == [0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 6]
    assert NUM_SPANS == len(SPAN_EDGES) + 1 == 7


def test_summaries_by_hand_ignore_unused_slots():
    # two slots at -6 (span 1), one at 0 (span 3), one unused slot holding 100 at -6
    context = torch.tensor([[[1.0], [3.0], [-2.0], [100.0]]])
    used = torch.tensor([[True, True, True, False]])
    offsets = torch.tensor([[-6, -6, 0, -6]])
    spans = span_summaries(context, used, offsets).reshape(NUM_SPANS, 3)
    expected = torch.tensor([[0, 0, 1], [2, 3, 0], [0, 0, 1], [-2, -2, 0],
                             [0, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=torch.float)
    torch.testing.assert_close(spans, expected)


def test_summaries_agree_with_the_probes():
    generator = torch.Generator().manual_seed(0)
    context = torch.randn(2, 40, D, generator=generator)
    offsets = torch.randint(-SPAN, SPAN + 1, (2, 40), generator=generator)
    used = torch.rand(2, 40, generator=generator) > 0.3
    used[1] = False  # a keyframe without memory: every span empty
    ours = span_summaries(context, used, offsets)
    for b in range(2):
        keep = used[b].numpy()
        probe = memory_summary(context[b].numpy()[keep], offsets[b].numpy()[keep], D)
        np.testing.assert_allclose(ours[b].numpy(), probe, rtol=1e-6, atol=1e-6)


def test_a_new_reader_returns_its_query_and_no_memory_means_no_update():
    block = SpanPoolingBlock(channels=D, hidden=D, dropout=0.0, position_span=SPAN).eval()
    query, memory = torch.randn(2, 3, D), torch.randn(2, 5, D)
    used = torch.tensor([[True] * 5, [False] * 5])
    offsets = torch.zeros(2, 5, dtype=torch.long)
    torch.testing.assert_close(block(query, memory, used, positions=offsets), query)
    perturbed(block)
    out = block(query, memory, used, positions=offsets)
    torch.testing.assert_close(out[1], query[1])  # nothing to read: exactly the query
    update = out[0] - query[0]
    assert update.abs().sum() > 0
    torch.testing.assert_close(update, update[:1].expand(3, -1))  # the same for every person


def test_when_a_feature_was_seen_matters_and_offsets_are_checked():
    block = perturbed(SpanPoolingBlock(channels=D, hidden=D, dropout=0.0, position_span=SPAN))
    query, memory = torch.randn(1, 1, D), torch.randn(1, 3, D)
    used = torch.ones(1, 3, dtype=torch.bool)
    before = block(query, memory, used, positions=torch.tensor([[-6, 0, 5]]))
    moved_within_span = block(query, memory, used, positions=torch.tensor([[-5, 0, 5]]))
    moved_across = block(query, memory, used, positions=torch.tensor([[-2, 0, 5]]))
    torch.testing.assert_close(before, moved_within_span)
    assert not torch.allclose(before, moved_across)
    with pytest.raises(HeadInputError, match=r"memory_offset\[0, 2\] = 31"):
        block(query, memory, used, positions=torch.tensor([[0, 0, 31]]))
    with pytest.raises(HeadInputError, match="positions"):
        block(query, memory, used)


def test_make_block_picks_the_memory_reader_by_name():
    assert type(make_block("M", hidden=D, out_channels=D, dropout=0.0, memory_span=SPAN)) \
        is InteractionBlock
    reader = make_block("M", hidden=D, out_channels=2 * D, dropout=0.0, memory_span=SPAN,
                        memory_reader="spans")
    assert isinstance(reader, SpanPoolingBlock) and reader.shortcut is not None
    # only the memory has readers: persons and objects stay I-blocks
    assert type(make_block("P", hidden=D, out_channels=D, dropout=0.0, memory_span=SPAN,
                           memory_reader="spans")) is InteractionBlock
    with pytest.raises(ValueError, match="valid: attention, spans"):
        make_block("M", hidden=D, out_channels=D, dropout=0.0, memory_span=SPAN,
                   memory_reader="lstm")
    assert set(MEMORY_READERS) == {"attention", "spans"}
