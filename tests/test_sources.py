import pytest
import torch

from avapipe.models.blocks import make_block
from avapipe.models.interaction import HeadInputError, KeyframeSets
from avapipe.models.sources import (OBJECT_SLOTS, PERSON_SLOTS, ContextOptions, SourceReducer,
                                    attend_source, memory_layout)

C, D, SPAN, K = 6, 4, 1, 2


def sets(person_mask, objects=1, memory_offset=((0, 1, 0),), seed=0):
    generator = torch.Generator().manual_seed(seed)
    batch, count = person_mask.shape
    offset = torch.tensor(memory_offset)
    return KeyframeSets(
        persons=torch.randn(batch, count, C, generator=generator), person_mask=person_mask,
        objects=torch.randn(batch, objects, C, generator=generator),
        object_mask=torch.ones(batch, objects, dtype=torch.bool),
        memory=torch.randn(batch, offset.shape[1], C, generator=generator),
        memory_mask=torch.ones(offset.shape, dtype=torch.bool),
        memory_offset=offset).padded_to_zero()


def reducer(padding="mask", attend_self=False, sources="POM"):
    torch.manual_seed(0)
    options = ContextOptions(memory_span=SPAN, memory_per_second=K, padding=padding,
                             attend_self=attend_self)
    return SourceReducer(channels=C, hidden=D, dropout=0.2, sources=sources,
                         options=options).eval()


def test_memory_layout_by_hand():
    memory = torch.arange(4.0)[None, :, None].expand(1, 4, 2)  # feature j = [j, j]
    mask = torch.tensor([[True, True, False, True]])
    offset = torch.tensor([[1, -1, 7, 1]])  # the padded slot's offset is never read
    laid, offsets = memory_layout(memory, mask, offset, span=SPAN, per_second=K)
    # Slots: second -1 (2), second 0 (2), second +1 (2); features 0 and 3 at second +1.
    assert offsets.tolist() == [[-1, -1, 0, 0, 1, 1]]
    assert laid[0, :, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 3.0]
    with pytest.raises(HeadInputError, match="more than 1 memory features at second 1"):
        memory_layout(memory, mask, offset, span=SPAN, per_second=1)
    with pytest.raises(HeadInputError, match=r"memory_offset\[0, 0\] = 1"):
        memory_layout(memory, mask, offset, span=0, per_second=K)


@pytest.mark.parametrize("padding,attend_self,expected", [
    ("mask", False, [[False, True, False], [True, False, False], [True, True, False]]),
    ("mask", True, [[True, True, False], [True, True, False], [True, True, False]]),
])
def test_person_attend_by_hand(padding, attend_self, expected):
    inputs = reducer(padding, attend_self)(sets(torch.tensor([[True, True, False]])))
    assert torch.equal(inputs.person_attend(), torch.tensor([expected]))


def test_attend_padding_gives_alphaction_fixed_size_sets():
    module = reducer("attend", attend_self=False)
    with torch.no_grad():
        for layer in module.reduce.values():
            layer.bias.normal_()
    inputs = module(sets(torch.tensor([[True, True, False]])))
    assert inputs.person_keys.shape == (1, PERSON_SLOTS, D)
    assert torch.equal(inputs.person_keys[0, 2:], torch.zeros(PERSON_SLOTS - 2, D))
    attend = inputs.person_attend()
    assert attend.shape == (1, 3, PERSON_SLOTS)
    assert attend[0, 0].tolist() == [False] + [True] * (PERSON_SLOTS - 1)  # not itself
    # Object and memory padding is zero before the projection: it carries the bias.
    assert inputs.objects.shape == (1, OBJECT_SLOTS, D)
    torch.testing.assert_close(inputs.objects[0, 1:], module.reduce["O"].bias.expand(4, D))
    assert inputs.memory.shape == (1, (2 * SPAN + 1) * K, D)
    assert inputs.memory_offset.tolist() == [[-1, -1, 0, 0, 1, 1]]
    torch.testing.assert_close(inputs.memory[0, :2], module.reduce["M"].bias.expand(2, D))
    assert inputs.object_mask.all() and inputs.memory_mask.all()


def test_attend_padding_block_equals_the_block_over_explicit_zero_slots():
    module = reducer("attend")
    with torch.no_grad():
        module.reduce["O"].bias.normal_()
    block = make_block("O", hidden=D, out_channels=D, dropout=0.0, memory_span=SPAN).eval()
    with torch.no_grad():
        block.out.weight.normal_()
    keyframe = sets(torch.tensor([[True, False]]), objects=2)
    inputs = module(keyframe)
    got = attend_source(block, "O", inputs.query, inputs, first=True)
    explicit = torch.cat([keyframe.objects, torch.zeros(1, OBJECT_SLOTS - 2, C)], dim=1)
    want = block(inputs.query, module.reduce["O"](explicit), torch.ones(1, 5, dtype=torch.bool))
    torch.testing.assert_close(got, want)
    masked = reducer("mask")(keyframe)
    assert not torch.allclose(attend_source(block, "O", masked.query, masked, first=True), got)


def test_person_block_ignores_self_unless_asked():
    block = make_block("P", hidden=D, out_channels=D, dropout=0.0, memory_span=SPAN).eval()
    with torch.no_grad():
        block.out.weight.normal_()
    alone = sets(torch.tensor([[True, False]]))
    inputs = reducer("mask", attend_self=False)(alone)
    out = attend_source(block, "P", inputs.query, inputs, first=True)
    assert torch.equal(out[0, 0], inputs.query[0, 0])
    inputs = reducer("mask", attend_self=True)(alone)
    out = attend_source(block, "P", inputs.query, inputs, first=True)
    want = block(inputs.query[:, :1], inputs.person_keys[:, :1], torch.ones(1, 1).bool())
    torch.testing.assert_close(out[:, :1], want)
    assert not torch.allclose(out[0, 0], inputs.query[0, 0])


def test_first_person_block_reads_the_key_projection_later_ones_the_states():
    module = reducer("mask", attend_self=True)
    inputs = module(sets(torch.tensor([[True, True]])))
    torch.testing.assert_close(inputs.person_keys, module.reduce["P"](sets(
        torch.tensor([[True, True]])).persons))
    state = torch.randn(1, 2, D)
    assert torch.equal(inputs.keys_of(state), state)


def test_unread_sources_get_no_projection_and_bad_options_are_rejected():
    assert set(reducer(sources="O").reduce) == {"O"}
    with pytest.raises(ValueError, match="valid: mask, attend"):
        ContextOptions(padding="zeros")
    with pytest.raises(ValueError, match="memory_per_second=0"):
        ContextOptions(memory_per_second=0)
