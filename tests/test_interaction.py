import math

import pytest
import torch

from avapipe.models.blocks import make_block
from avapipe.models.interaction import (HeadInputError, InteractionBlock, KeyframeSets,
                                        masked_attention_weights)

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
    out = query.clone() if block.shortcut is None else block.shortcut(query)
    for b in range(query.shape[0]):
        for q in range(query.shape[1]):
            keys = torch.nonzero(attend[b, q])[:, 0]
            if len(keys) == 0:
                continue
            k, v = block.key(context[b, keys]), block.value(context[b, keys])
            if positions is not None:
                k = k + block.key_positions[positions[b, keys] + block.position_span]
                v = v + block.value_positions[positions[b, keys] + block.position_span]
            scores = block.query(query[b, q]) @ k.T / math.sqrt(block.hidden)
            gathered = torch.softmax(scores, dim=0) @ v
            normed = (gathered - gathered.mean()) / torch.sqrt(gathered.var(unbiased=False) + 1e-5)
            out[b, q] = out[b, q] + block.out(torch.relu(normed))
    return out


def test_masked_weights_ignore_masked_entries_and_give_zero_rows():
    logits = torch.tensor([[[0.0, math.log(3.0), 50.0], [1.0, 2.0, 3.0]]])
    attend = torch.tensor([[[True, True, False], [False, False, False]]])
    weights = masked_attention_weights(logits, attend)
    assert torch.allclose(weights[0, 0], torch.tensor([0.25, 0.75, 0.0]))
    assert torch.equal(weights[0, 1], torch.zeros(3))


@pytest.mark.parametrize("per_query,out_channels", [(False, None), (True, None), (False, 5)])
def test_block_matches_slow_reference(per_query, out_channels):
    torch.manual_seed(1)
    block = perturbed(InteractionBlock(channels=C, context_channels=12, hidden=D,
                                       out_channels=out_channels, position_span=SPAN))
    with torch.no_grad():
        block.key_positions.normal_()
        block.value_positions.normal_()
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


def test_new_block_with_another_width_is_its_shortcut_whatever_the_context():
    torch.manual_seed(6)
    block = InteractionBlock(channels=D, hidden=D, out_channels=C, dropout=0.0)
    assert block.shortcut.weight.shape == (C, D)
    assert block.shortcut.weight.std().item() == pytest.approx(0.01, rel=0.2)
    assert torch.equal(block.shortcut.bias, torch.zeros(C))
    query = torch.randn(1, 3, D)
    out = block(query, torch.randn(1, 4, D), torch.ones(1, 4, dtype=torch.bool))
    assert torch.equal(out, block.shortcut(query))


def test_layer_norm_has_no_affine_parameters():
    block = InteractionBlock(channels=C, hidden=D)
    assert not list(block.norm.parameters())
    assert {name for name, _ in block.named_parameters()} == {
        "query.weight", "query.bias", "key.weight", "value.weight", "value.bias",
        "out.weight", "out.bias"}


def test_memory_positions_start_at_zero_and_are_added_to_keys_and_values():
    block = make_block("M", hidden=D, out_channels=D, dropout=0.0, memory_span=SPAN)
    assert block.key_positions.shape == block.value_positions.shape == (2 * SPAN + 1, D)
    assert torch.equal(block.key_positions, torch.zeros(2 * SPAN + 1, D))
    assert torch.equal(block.value_positions, torch.zeros(2 * SPAN + 1, D))
    # Values 0 from the context: what is gathered is the value embedding of the second.
    with torch.no_grad():
        block.value.weight.zero_()
        block.out.weight.copy_(torch.eye(D))
        block.value_positions[SPAN + 1] = torch.arange(D, dtype=torch.float)
    query, memory = torch.randn(1, 2, D), torch.randn(1, 3, D)
    out = block.eval()(query, memory, torch.ones(1, 3, dtype=torch.bool),
                       positions=torch.tensor([[1, 1, 1]]))
    ramp = torch.arange(D, dtype=torch.float)
    normed = (ramp - ramp.mean()) / torch.sqrt(ramp.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(out, query + torch.relu(normed))


def test_memory_positions_matter_and_are_range_checked():
    torch.manual_seed(4)
    block = perturbed(make_block("M", hidden=C, out_channels=C, dropout=0.2, memory_span=SPAN))
    with torch.no_grad():
        block.key_positions.normal_()
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
        make_block("X", hidden=D, out_channels=D, dropout=0.0, memory_span=SPAN)


def test_padded_to_zero_clears_padded_slots_only():
    sets = KeyframeSets(
        persons=torch.randn(1, 3, C), person_mask=torch.tensor([[True, False, True]]),
        objects=torch.randn(1, 0, C), object_mask=torch.zeros(1, 0, dtype=torch.bool),
        memory=torch.randn(1, 2, C), memory_mask=torch.tensor([[False, True]]),
        memory_offset=torch.tensor([[5, 1]])).padded_to_zero()
    assert torch.equal(sets.persons[0, 1], torch.zeros(C))
    assert sets.persons[0, 0].abs().sum() > 0
    assert torch.equal(sets.memory[0, 0], torch.zeros(C))
    assert sets.memory_offset.tolist() == [[0, 1]]
