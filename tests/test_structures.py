import math

import pytest
import torch

from avapipe.models.interaction import KeyframeSets
from avapipe.models.sources import ContextOptions, attend_source
from avapipe.models.structures import (DenseSerialStructure, NoInteraction, ParallelStructure,
                                       SerialStructure)

C, D, SPAN = 16, 8, 2
STRUCTURES = {"none": NoInteraction, "serial": SerialStructure,
              "dense": DenseSerialStructure, "parallel": ParallelStructure}


def build(name, padding="mask", attend_self=False, **extra):
    options = ContextOptions(memory_span=SPAN, memory_per_second=5, padding=padding,
                             attend_self=attend_self)
    return STRUCTURES[name](channels=C, hidden=D, dropout=0.2, options=options, **extra)


def perturb_outputs(module, seed=0):
    """Give every zero-initialised output projection random values and switch dropout off."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if ".out." in f".{name}":
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return module.eval()


def make_sets(seed=0, persons=(3, 1), objects=(2, 0), memory=(4, 2)):
    """Padded sets for two keyframes; each tuple gives the real slots per keyframe."""
    generator = torch.Generator().manual_seed(seed)

    def padded(counts):
        mask = torch.arange(max(max(counts), 1))[None, :] < torch.tensor(counts)[:, None]
        return torch.randn(*mask.shape, C, generator=generator), mask

    persons_, person_mask = padded(persons)
    objects_, object_mask = padded(objects)
    memory_, memory_mask = padded(memory)
    offset = torch.randint(-SPAN, SPAN + 1, memory_mask.shape, generator=generator)
    return KeyframeSets(persons=persons_, person_mask=person_mask, objects=objects_,
                        object_mask=object_mask, memory=memory_, memory_mask=memory_mask,
                        memory_offset=offset)


def with_new_padding(sets, seed=9):
    """The same sets with different random values in every padded slot."""
    generator = torch.Generator().manual_seed(seed)

    def refill(features, mask):
        return torch.where(mask[..., None], features,
                           torch.randn(features.shape, generator=generator) * 100)

    return KeyframeSets(
        persons=refill(sets.persons, sets.person_mask), person_mask=sets.person_mask,
        objects=refill(sets.objects, sets.object_mask), object_mask=sets.object_mask,
        memory=refill(sets.memory, sets.memory_mask), memory_mask=sets.memory_mask,
        memory_offset=torch.where(sets.memory_mask, sets.memory_offset, 50))


def with_new_context(sets, seed=8):
    """The same persons with other objects and memory."""
    generator = torch.Generator().manual_seed(seed)
    return KeyframeSets(**{**sets.__dict__,
                           "objects": torch.randn(sets.objects.shape, generator=generator),
                           "memory": torch.randn(sets.memory.shape, generator=generator)})


def context_free(structure, sets):
    """What a structure whose blocks add nothing returns: the last blocks' shortcuts
    of the reduced person query (summed over the branches of parallel)."""
    query = structure.sources.query(sets.persons)
    if isinstance(structure, ParallelStructure):
        return sum(branch[-1].shortcut(query) for branch in structure.branches)
    return structure.blocks[-1].shortcut(query)


@pytest.mark.parametrize("name", ["serial", "dense", "parallel"])
@pytest.mark.parametrize("padding", ["mask", "attend"])
def test_new_structure_ignores_the_context(name, padding):
    torch.manual_seed(0)
    sets = make_sets().padded_to_zero()
    structure = build(name, padding).eval()
    out = structure(sets)
    assert out.shape == sets.persons.shape
    # Dense mixes with weights 1e-5 on older outputs: equal up to that.
    torch.testing.assert_close(out, context_free(structure, sets), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(structure(with_new_context(sets).padded_to_zero()), out)


def test_none_adds_nothing():
    sets = make_sets().padded_to_zero()
    assert torch.equal(build("none")(sets), torch.zeros_like(sets.persons))


@pytest.mark.parametrize("name", ["serial", "dense", "parallel"])
def test_padded_values_change_nothing(name):
    torch.manual_seed(1)
    structure = perturb_outputs(build(name))
    sets = make_sets()
    with torch.no_grad():
        first = structure(sets.padded_to_zero())
        second = structure(with_new_padding(sets).padded_to_zero())
        free = context_free(structure, sets.padded_to_zero())
    real = sets.person_mask
    assert torch.equal(first[real], second[real])
    assert not torch.allclose(first[real], free[real])


@pytest.mark.parametrize("name", ["serial", "dense", "parallel"])
def test_lone_person_without_objects_or_memory_gets_the_context_free_output(name):
    torch.manual_seed(2)
    structure = perturb_outputs(build(name))
    sets = make_sets(persons=(1, 1), objects=(0, 0), memory=(0, 0)).padded_to_zero()
    with torch.no_grad():
        torch.testing.assert_close(structure(sets), context_free(structure, sets),
                                   rtol=1e-4, atol=1e-6)
    # With padding 'attend' the zero slots take part, and the update is not zero.
    attend = perturb_outputs(build(name, "attend"))
    attend.load_state_dict(structure.state_dict())
    with torch.no_grad():
        assert not torch.allclose(attend(sets), structure(sets))


@pytest.mark.parametrize("name", ["serial", "dense", "parallel"])
def test_every_parameter_gets_gradient_after_outputs_are_perturbed(name):
    torch.manual_seed(3)
    structure = perturb_outputs(build(name), seed=3)
    sets = make_sets(seed=3).padded_to_zero()
    structure(sets)[sets.person_mask].square().sum().backward()
    for parameter_name, parameter in structure.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


def test_dense_mix_starts_on_the_latest_output():
    dense = build("dense")
    assert len(dense.mix_logits) == 4  # blocks 2..5
    logits = dense.mix_logits[3]
    assert logits.shape == (5, D)
    assert torch.equal(logits[-1], torch.zeros(D))
    assert torch.allclose(logits[:-1], torch.full((4, D), -5 * math.log(10)))
    history = [torch.randn(2, 3, D) for _ in range(5)]
    with torch.no_grad():
        torch.testing.assert_close(dense.mix(5, history), history[-1], rtol=1e-4, atol=1e-4)


def test_dense_with_all_weight_on_the_latest_output_is_serial():
    torch.manual_seed(4)
    dense = perturb_outputs(build("dense"))
    serial = build("serial").eval()
    serial.load_state_dict(dense.state_dict(), strict=False)
    with torch.no_grad():
        for logits in dense.mix_logits:
            logits.fill_(-1e4)
            logits[-1] = 0.0
    sets = make_sets(seed=4).padded_to_zero()
    with torch.no_grad():
        assert torch.allclose(dense(sets), serial(sets), atol=1e-6)


def test_dense_third_block_reads_the_per_channel_mix_of_earlier_outputs():
    torch.manual_seed(5)
    dense = perturb_outputs(build("dense", order="OMO"))
    with torch.no_grad():
        dense.mix_logits[0][0] = math.log(3.0)  # weights 3/4 on block 0, 1/4 on block 1
        dense.mix_logits[0][1] = 0.0
        dense.mix_logits[0][1, 0] = 50.0  # channel 0: all on block 1
    sets = make_sets(seed=5).padded_to_zero()
    with torch.no_grad():
        inputs = dense.sources(sets)
        first = attend_source(dense.blocks[0], "O", inputs.query, inputs, first=True)
        second = attend_source(dense.blocks[1], "M", first, inputs, first=False)
        mixed = 0.75 * first + 0.25 * second
        mixed[..., 0] = second[..., 0]
        expected = attend_source(dense.blocks[2], "O", mixed, inputs, first=False)
        torch.testing.assert_close(dense(sets), expected, rtol=1e-5, atol=1e-5)


def test_parallel_is_two_layers_of_pom_summed_over_branches():
    torch.manual_seed(6)
    parallel = perturb_outputs(build("parallel"))
    assert [len(branch) for branch in parallel.branches] == [2, 2, 2]
    assert parallel.branches[1][0].shortcut is None and parallel.branches[1][1].shortcut
    sets = make_sets(seed=6).padded_to_zero()
    with torch.no_grad():
        inputs = parallel.sources(sets)
        expected = 0
        for source, (first, second) in zip("POM", parallel.branches):
            state = attend_source(first, source, inputs.query, inputs, first=True)
            # The P branch's second block attends over its own first output.
            expected = expected + attend_source(second, source, state, inputs, first=False)
        torch.testing.assert_close(parallel(sets), expected)


def test_serial_order_sets_the_blocks_and_bad_order_is_rejected():
    structure = build("serial", order="MPO")
    assert [block.position_span for block in structure.blocks] == [SPAN, None, None]
    assert [block.out.out_features for block in structure.blocks] == [D, D, C]
    assert set(structure.sources.reduce) == {"P", "O", "M"}
    assert set(build("serial", order="OO").sources.reduce) == {"O"}
    with pytest.raises(ValueError, match="persons, objects, memory"):
        build("serial", order="PX")


def test_fixed_seed_gives_identical_structures():
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        structure = perturb_outputs(build("dense"), seed=7)
        outputs.append(structure(make_sets(seed=7).padded_to_zero()))
    assert torch.equal(outputs[0], outputs[1])
