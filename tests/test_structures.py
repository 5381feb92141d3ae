import pytest
import torch

from avapipe.models.interaction import KeyframeSets, attend_source
from avapipe.models.structures import (DenseSerialStructure, NoInteraction, ParallelStructure,
                                       SerialStructure)

C, D, SPAN = 16, 8, 2
STRUCTURES = {"none": NoInteraction, "serial": SerialStructure,
              "dense": DenseSerialStructure, "parallel": ParallelStructure}


def build(name, **extra):
    return STRUCTURES[name](channels=C, hidden=D, memory_span=SPAN, dropout=0.2, **extra)


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


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_shape_and_new_structure_returns_person_features(name):
    torch.manual_seed(0)
    sets = make_sets().padded_to_zero()
    out = build(name).train()(sets)
    assert out.shape == sets.persons.shape
    # Dense mixes equal copies with softmax weights: equal up to rounding.
    torch.testing.assert_close(out, sets.persons, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["serial", "dense", "parallel"])
def test_padded_values_change_nothing(name):
    torch.manual_seed(1)
    structure = perturb_outputs(build(name))
    sets = make_sets()
    with torch.no_grad():
        first = structure(sets.padded_to_zero())
        second = structure(with_new_padding(sets).padded_to_zero())
    real = sets.person_mask
    assert torch.equal(first[real], second[real])
    assert not torch.allclose(first[real], sets.persons[real])


@pytest.mark.parametrize("name", ["serial", "dense", "parallel"])
def test_lone_person_without_objects_or_memory_keeps_its_feature(name):
    torch.manual_seed(2)
    structure = perturb_outputs(build(name))
    sets = make_sets(persons=(1, 1), objects=(0, 0), memory=(0, 0))
    out = structure(sets.padded_to_zero())
    torch.testing.assert_close(out, sets.persons, rtol=1e-6, atol=1e-6)
    empty = make_sets(persons=(1, 1), objects=(0, 0), memory=(0, 0))
    empty = KeyframeSets(**{**empty.__dict__, "objects": torch.zeros(2, 0, C),
                            "object_mask": torch.zeros(2, 0, dtype=torch.bool)})
    torch.testing.assert_close(structure(empty), empty.persons, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["serial", "dense", "parallel"])
def test_every_parameter_gets_gradient_after_outputs_are_perturbed(name):
    torch.manual_seed(3)
    structure = perturb_outputs(build(name), seed=3)
    sets = make_sets(seed=3).padded_to_zero()
    structure(sets)[sets.person_mask].square().sum().backward()
    for parameter_name, parameter in structure.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


def test_dense_with_all_weight_on_the_latest_output_is_serial():
    torch.manual_seed(4)
    dense = perturb_outputs(build("dense"))
    serial = build("serial").eval()
    serial.blocks.load_state_dict(dense.blocks.state_dict())
    with torch.no_grad():
        for logits in dense.mix_logits:
            logits.fill_(-1e4)
            logits[-1] = 0.0
    sets = make_sets(seed=4).padded_to_zero()
    assert torch.allclose(dense(sets), serial(sets), atol=1e-6)


def test_dense_second_block_reads_the_mean_of_persons_and_first_output():
    torch.manual_seed(5)
    dense = perturb_outputs(build("dense", order="OM"))
    sets = make_sets(seed=5).padded_to_zero()
    first = attend_source(dense.blocks[0], "O", sets.persons, sets)
    expected = attend_source(dense.blocks[1], "M", (sets.persons + first) / 2, sets)
    assert torch.allclose(dense(sets), expected, atol=1e-6)


def test_parallel_adds_the_branch_updates():
    torch.manual_seed(6)
    parallel = perturb_outputs(build("parallel"))
    sets = make_sets(seed=6).padded_to_zero()
    updates = [attend_source(block, source, sets.persons, sets) - sets.persons
               for source, block in zip("POM", parallel.blocks)]
    assert torch.allclose(parallel(sets), sets.persons + sum(updates), atol=1e-6)


def test_serial_order_sets_the_blocks_and_bad_order_is_rejected():
    structure = build("serial", order="MPO")
    assert [block.position_span for block in structure.blocks] == [SPAN, None, None]
    with pytest.raises(ValueError, match="persons, objects, memory"):
        build("serial", order="PX")


def test_fixed_seed_gives_identical_structures():
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        structure = perturb_outputs(build("dense"), seed=7)
        outputs.append(structure(make_sets(seed=7).padded_to_zero()))
    assert torch.equal(outputs[0], outputs[1])
