import math

import pytest
import torch

from avapipe.models.interaction import (HeadInputError, InteractionBlock, KeyframeSets,
                                        attend_source, make_block, masked_attention_weights,
                                        others_mask)

C, D, SPAN = 16, 8, 3


def perturbed(block: InteractionBlock, seed: int = 0) -> InteractionBlock:
    """The block with its zero-initialised output projection set to random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        block.out.weight.copy_(torch.randn(block.out.weight.shape, generator=generator))
        block.out.bias.copy_(torch.randn(block.out.bias.shape, generator=generator))
    return block.eval()


def reference_block(block, query, context, attend, positions=None):
    """Slow per-query version of the I-block: softmax over the valid keys only."""
    out = query.clone()
    for b in range(query.shape[0]):
        for q in range(query.shape[1]):
            keys = torch.nonzero(attend[b, q])[:, 0]
            if len(keys) == 0:
                continue
            k = block.key(context[b, keys])
            if positions is not None:
                k = k + block.positions.weight[positions[b, keys] + block.position_span]
            scores = block.query(query[b, q]) @ k.T / math.sqrt(block.hidden)
            gathered = torch.softmax(scores, dim=0) @ block.value(context[b, keys])
            out[b, q] = query[b, q] + block.out(torch.relu(block.norm(gathered)))
    return out


def test_masked_weights_ignore_masked_entries_and_give_zero_rows():
    logits = torch.tensor([[[0.0, math.log(3.0), 50.0], [1.0, 2.0, 3.0]]])
    attend = torch.tensor([[[True, True, False], [False, False, False]]])
    weights = masked_attention_weights(logits, attend)
    assert torch.allclose(weights[0, 0], torch.tensor([0.25, 0.75, 0.0]))
    assert torch.equal(weights[0, 1], torch.zeros(3))


def test_others_mask_excludes_self_and_padding():
    mask = others_mask(torch.tensor([[True, True, False]]))
    expected = torch.tensor([[[False, True, False], [True, False, False], [True, True, False]]])
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("per_query", [False, True])
def test_block_matches_slow_reference(per_query):
    torch.manual_seed(1)
    block = perturbed(InteractionBlock(channels=C, context_channels=12, hidden=D,
                                       position_span=SPAN))
    query, context = torch.randn(2, 3, C), torch.randn(2, 5, 12)
    slot_mask = torch.tensor([[True, False, True, True, False], [False] * 5])
    attend = slot_mask[:, None, :].expand(-1, 3, -1)
    if per_query:
        attend = attend & (torch.rand(2, 3, 5) > 0.3)
    positions = torch.randint(-SPAN, SPAN + 1, (2, 5))
    with torch.no_grad():
        got = block(query, context, attend if per_query else slot_mask, positions=positions)
        want = reference_block(block, query, context, attend, positions)
    assert torch.allclose(got, want, atol=1e-5)


def test_padded_context_values_change_nothing():
    torch.manual_seed(2)
    block = perturbed(InteractionBlock(channels=C, hidden=D, position_span=SPAN))
    query, context = torch.randn(2, 3, C), torch.randn(2, 4, C)
    mask = torch.tensor([[True, True, False, False], [True, False, True, False]])
    positions = torch.randint(-SPAN, SPAN + 1, (2, 4))
    other_context = torch.where(mask[..., None], context, torch.randn(2, 4, C) * 1e3)
    other_positions = torch.where(mask, positions, torch.full_like(positions, 99))
    with torch.no_grad():
        first = block(query, context, mask, positions=positions)
        second = block(query, other_context, mask, positions=other_positions)
    assert torch.equal(first, second)


@pytest.mark.parametrize("keys", [0, 3])
def test_query_without_keys_is_unchanged_and_finite(keys):
    block = perturbed(InteractionBlock(channels=C, hidden=D)).train()
    query = torch.randn(2, 4, C)
    out = block(query, torch.randn(2, keys, C), torch.zeros(2, keys, dtype=torch.bool))
    assert torch.equal(out, query)


def test_new_block_is_identity_and_output_projection_gets_gradient_first():
    torch.manual_seed(3)
    block = InteractionBlock(channels=C, hidden=D, dropout=0.0)
    query = torch.randn(1, 3, C)
    out = block(query, torch.randn(1, 4, C), torch.ones(1, 4, dtype=torch.bool))
    assert torch.equal(out, query)
    out.square().sum().backward()
    # Zero-initialised output projection: only it learns at step 0.
    assert block.out.weight.grad.abs().sum() > 0
    assert block.query.weight.grad.abs().sum() == 0
    optimizer = torch.optim.SGD(block.parameters(), lr=0.1)
    optimizer.step()
    optimizer.zero_grad()
    block(query, torch.randn(1, 4, C), torch.ones(1, 4, dtype=torch.bool)).square().sum().backward()
    for name, parameter in block.named_parameters():
        assert parameter.grad.abs().sum() > 0, name


def test_memory_positions_matter_and_are_range_checked():
    torch.manual_seed(4)
    block = perturbed(make_block("M", channels=C, hidden=D, dropout=0.2, memory_span=SPAN))
    with torch.no_grad():
        block.positions.weight.normal_()
    query, memory = torch.randn(1, 2, C), torch.randn(1, 3, C)
    mask = torch.ones(1, 3, dtype=torch.bool)
    near = block(query, memory, mask, positions=torch.tensor([[-1, 0, 1]]))
    far = block(query, memory, mask, positions=torch.tensor([[-3, 0, 3]]))
    assert not torch.allclose(near, far)
    with pytest.raises(HeadInputError, match=r"memory_offset\[0, 2\] = 4"):
        block(query, memory, mask, positions=torch.tensor([[0, 0, 4]]))
    with pytest.raises(HeadInputError, match="positions"):
        block(query, memory, mask)


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="valid: P, O, M"):
        make_block("X", channels=C, hidden=D, dropout=0.0, memory_span=SPAN)


def _sets(person_mask, objects=2, memory=3):
    batch, count = person_mask.shape
    return KeyframeSets(
        persons=torch.randn(batch, count, C), person_mask=person_mask,
        objects=torch.randn(batch, objects, C),
        object_mask=torch.ones(batch, objects, dtype=torch.bool),
        memory=torch.randn(batch, memory, C),
        memory_mask=torch.ones(batch, memory, dtype=torch.bool),
        memory_offset=torch.randint(-SPAN, SPAN + 1, (batch, memory))).padded_to_zero()


def test_person_block_ignores_self():
    torch.manual_seed(5)
    block = perturbed(make_block("P", channels=C, hidden=D, dropout=0.0, memory_span=SPAN))
    alone = _sets(torch.tensor([[True, False]]))
    out = attend_source(block, "P", alone.persons, alone)
    assert torch.equal(out[0, 0], alone.persons[0, 0])
    pair = _sets(torch.tensor([[True, True]]))
    moved = attend_source(block, "P", pair.persons, pair)
    expected = block(pair.persons[:, :1], pair.persons[:, 1:], torch.ones(1, 1, dtype=torch.bool))
    assert torch.allclose(moved[:, :1], expected)


def test_padded_to_zero_clears_padded_slots_only():
    sets = _sets(torch.tensor([[True, False, True]]))
    assert torch.equal(sets.persons[0, 1], torch.zeros(C))
    assert sets.persons[0, 0].abs().sum() > 0
