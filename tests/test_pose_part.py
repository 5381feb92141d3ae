import math

import pytest
import torch

from avapipe.models.pose_part import (PosePartNetwork, SqueezeExcite, masked_mean,
                                      part_attend_mask)

C, CP, W, D = 16, 12, 8, 8


def build(seed=0, pooling="mean"):
    torch.manual_seed(seed)
    network = PosePartNetwork(context_channels=C, part_channels=CP, width=W, hidden=D,
                              dropout=0.2, pooling=pooling)
    with torch.no_grad():
        network.block.out.weight.normal_()
        network.block.out.bias.normal_()
    return network.eval()


def make_inputs(seed=0):
    """Two keyframes: 3 and 1 real persons, 2 and 0 real objects, some invalid parts."""
    generator = torch.Generator().manual_seed(seed)
    person_mask = torch.tensor([[True, True, True], [True, False, False]])
    object_mask = torch.tensor([[True, True], [False, False]])
    part_mask = torch.rand(2, 3, 10, generator=generator) > 0.3
    part_mask[0, 2] = False  # a real person whose parts are all invalid
    part_mask[0, 0, 0] = True
    return dict(persons=torch.randn(2, 3, C, generator=generator), person_mask=person_mask,
                objects=torch.randn(2, 2, C, generator=generator), object_mask=object_mask,
                parts=torch.randn(2, 3, 10, CP, generator=generator), part_mask=part_mask)


def test_squeeze_excite_by_hand():
    excite = SqueezeExcite(num_parts=2, reduction=1)
    with torch.no_grad():
        excite.reduce.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        excite.reduce.bias.zero_()
        excite.expand.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        excite.expand.bias.copy_(torch.tensor([0.0, math.log(3.0)]))
    parts = torch.tensor([[1.0, 3.0], [5.0, -5.0]])  # channel means 2 and 0
    weights = excite(parts)
    assert torch.allclose(weights, torch.tensor([1 / (1 + math.exp(-2.0)), 0.75]))


def test_part_attend_mask_by_hand():
    context_mask = torch.tensor([[True, False, True]])
    part_mask = torch.tensor([[[True, False], [True, True]]])
    got = part_attend_mask(context_mask=context_mask, part_mask=part_mask)
    context = [True, False, True]
    expected = torch.tensor([[context + [True, False, False, False],
                              context + [True, False, False, False],
                              context + [False, False, True, True],
                              context + [False, False, True, True]]])
    assert torch.equal(got, expected)


def test_masked_mean_by_hand_and_empty_rows_are_zero():
    features = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                             [[7.0, 7.0], [8.0, 8.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert torch.equal(masked_mean(features, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


def slow_reference(network, persons, person_mask, objects, object_mask, parts, part_mask):
    """Person by person: the valid parts attend over the real persons, real objects and
    the person's own valid parts; SE over the ten parts (invalid ones zero); then the
    mean of the valid parts, or all ten in part order."""
    out = torch.zeros(persons.shape[0], persons.shape[1], network.width)
    for b in range(persons.shape[0]):
        context = network.context_projection(
            torch.cat([persons[b][person_mask[b]], objects[b][object_mask[b]]]))
        for p in torch.nonzero(person_mask[b])[:, 0].tolist():
            valid = torch.nonzero(part_mask[b, p])[:, 0]
            if len(valid) == 0:
                continue
            queries = network.part_projection(parts[b, p, valid])
            keys = torch.cat([context, queries])
            reasoned = network.block(queries[None], keys[None],
                                     torch.ones(1, len(keys), dtype=torch.bool))[0]
            all_parts = torch.zeros(10, network.part_width).index_copy(0, valid, reasoned)
            weighted = all_parts * network.excite(all_parts)[:, None]
            pooled = weighted.reshape(-1) if network.pooling == "concat" else weighted[valid].mean(dim=0)
            out[b, p] = pooled
    return out


@pytest.mark.parametrize("pooling, width", [("mean", W), ("concat", 10 * W)])
def test_matches_slow_reference(pooling, width):
    network, inputs = build(1, pooling), make_inputs(1)
    with torch.no_grad():
        got = network(**inputs)
        want = slow_reference(network, **inputs)
    assert network.width == width and got.shape == (2, 3, width)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.equal(got[0, 2], torch.zeros(width))  # no valid part


def test_concat_keeps_which_part_is_which():
    """The same feature in two different parts lands in different slots (scaled
    by that slot's SE weight), and an invalid part's slot is zero."""
    network, inputs = build(6, "concat"), make_inputs(6)
    inputs["part_mask"][:] = False
    inputs["part_mask"][0, 0, 3] = True
    moved = {**inputs, "part_mask": torch.zeros_like(inputs["part_mask"])}
    moved["part_mask"][0, 0, 7] = True
    moved["parts"] = inputs["parts"].clone()
    moved["parts"][0, 0, 7] = inputs["parts"][0, 0, 3]
    with torch.no_grad():
        first, second = network(**inputs)[0, 0].reshape(10, W), network(**moved)[0, 0].reshape(10, W)
    assert first[3].abs().sum() > 0
    scale = first[3].norm() / second[7].norm()
    assert torch.allclose(first[3], second[7] * scale, atol=1e-6)
    assert torch.equal(first[7], torch.zeros(W)) and torch.equal(second[3], torch.zeros(W))


def test_unknown_pooling_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown part pooling 'max'; valid: concat, mean"):
        PosePartNetwork(context_channels=C, part_channels=CP, width=W, hidden=D, dropout=0.2,
                        pooling="max")


def test_invalid_parts_and_padding_change_nothing():
    network, inputs = build(2), make_inputs(2)
    changed = dict(inputs)
    noise = torch.randn(2, 3, 10, CP) * 100
    valid = inputs["part_mask"] & inputs["person_mask"][..., None]
    changed["parts"] = torch.where(valid[..., None], inputs["parts"], noise)
    changed["persons"] = torch.where(inputs["person_mask"][..., None], inputs["persons"], 7.0)
    changed["objects"] = torch.where(inputs["object_mask"][..., None], inputs["objects"], -7.0)
    with torch.no_grad():
        first, second = network(**inputs), network(**changed)
    real = inputs["person_mask"]
    assert torch.equal(first[real], second[real])


def test_a_part_only_reaches_the_parts_of_its_own_person():
    network, inputs = build(3), make_inputs(3)
    changed = dict(inputs)
    changed["parts"] = inputs["parts"].clone()
    changed["parts"][0, 0, 0] += 5.0  # a valid part of person 0
    with torch.no_grad():
        first, second = network(**inputs), network(**changed)
    assert not torch.allclose(first[0, 0], second[0, 0])
    assert torch.equal(first[0, 1], second[0, 1])


def test_every_parameter_gets_gradient_after_output_is_perturbed():
    network, inputs = build(4), make_inputs(4)
    network(**inputs)[inputs["person_mask"]].square().sum().backward()
    for name, parameter in network.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_new_network_output_is_the_weighted_mean_of_projected_parts():
    torch.manual_seed(5)
    network = PosePartNetwork(context_channels=C, part_channels=CP, width=W, hidden=D,
                              dropout=0.2, pooling="mean")
    inputs = make_inputs(5)
    inputs["part_mask"][:] = True
    projected = network.part_projection(inputs["parts"])
    weighted = projected * network.excite(projected)[..., None]
    out = network(**inputs)
    real = inputs["person_mask"]
    torch.testing.assert_close(out[real], weighted.mean(dim=2)[real])
