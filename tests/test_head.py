import pytest
import torch

from avapipe.models.head import (
    FUSIONS, HeadOutput, build_head, head_probabilities, unused_options,
)
from avapipe.models.interaction import HeadInputError
from avapipe.models.losses import class_probabilities, head_loss

C, CP, D, SPAN, CLASSES, FC = 16, 12, 8, 2, 5, 24
POSE = torch.tensor([True, True, False, False, False])
CASES = [(fusion, pose_part) for fusion in FUSIONS for pose_part in (False, True)]
OPTIONS = [dict(padding="mask", attend_self=False), dict(padding="attend", attend_self=True),
           dict(padding="mask", attend_self=False, memory_reader="spans")]


def build(fusion, pose_part, seed=0, **options):
    torch.manual_seed(seed)
    return build_head(fusion=fusion, pose_part=pose_part, in_channels=C, part_channels=CP,
                      num_classes=CLASSES, hidden=D, memory_span=SPAN, dropout=0.2,
                      memory_per_second=4, fc_width=FC, **options)


def perturb_outputs(head, seed=0):
    """Give every zero-initialised output projection random values and switch dropout off."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in head.named_parameters():
            if ".out." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return head.eval()


def make_inputs(seed=0, fill=None):
    """Two keyframes (3 and 1 real persons, 2 and 0 objects, 4 and 2 memory slots).

    fill: when given, the value of every padded or invalid slot."""
    generator = torch.Generator().manual_seed(seed)

    def padded(counts, *shape):
        mask = torch.arange(max(counts))[None, :] < torch.tensor(counts)[:, None]
        features = torch.randn(*mask.shape, *shape, generator=generator)
        return features, mask

    persons, person_mask = padded((3, 1), C)
    objects, object_mask = padded((2, 0), C)
    memory, memory_mask = padded((4, 2), C)
    offset = torch.randint(-SPAN, SPAN + 1, memory_mask.shape, generator=generator)
    parts = torch.randn(2, 3, 10, CP, generator=generator)
    part_mask = torch.rand(2, 3, 10, generator=generator) > 0.3
    inputs = dict(persons=persons, person_mask=person_mask, objects=objects,
                  object_mask=object_mask, memory=memory, memory_mask=memory_mask,
                  memory_offset=offset, parts=parts, part_mask=part_mask)
    if fill is not None:
        for key, mask in [("persons", person_mask), ("objects", object_mask),
                          ("memory", memory_mask),
                          ("parts", part_mask & person_mask[..., None])]:
            inputs[key] = torch.where(mask[..., None], inputs[key], fill)
        inputs["memory_offset"] = torch.where(memory_mask, offset, int(fill))
    return inputs


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("fusion,pose_part", CASES)
def test_shapes_and_zero_logits_at_padded_persons(fusion, pose_part, options):
    head = build(fusion, pose_part, **options).train()
    out = head(**make_inputs())
    assert out.logits.shape == (2, 3, CLASSES)
    assert (out.global_logits is not None) == pose_part
    assert len(out.trained_logits()) == (2 if pose_part else 1)
    for logits in out.trained_logits():
        assert torch.equal(logits[1, 1:], torch.zeros(2, CLASSES))
        assert not logits.isnan().any()


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("fusion,pose_part", CASES)
def test_padded_and_invalid_slot_values_change_nothing(fusion, pose_part, options):
    head = perturb_outputs(build(fusion, pose_part, seed=1, **options), seed=1)
    with torch.no_grad():
        first = head(**make_inputs(seed=1, fill=0.0))
        second = head(**make_inputs(seed=1, fill=1e3))
    for a, b in zip(first.trained_logits(), second.trained_logits()):
        assert torch.equal(a, b)


def test_baseline_is_two_hidden_layers_on_the_person_feature():
    head = build("none", pose_part=False, seed=2).eval()
    mlp = head.classifier
    assert (mlp.fc1.in_features, mlp.fc1.out_features) == (C, FC)
    assert (mlp.fc2.in_features, mlp.fc2.out_features) == (FC, FC)
    assert (mlp.score.in_features, mlp.score.out_features) == (FC, CLASSES)
    bound = (3 / C) ** 0.5  # kaiming-uniform with a = 1: sqrt(6 / ((1 + 1) fan_in))
    assert 0.9 * bound < mlp.fc1.weight.abs().max() <= bound
    assert torch.equal(mlp.fc1.bias, torch.zeros(FC)) and torch.equal(mlp.score.bias,
                                                                        torch.zeros(CLASSES))
    assert 0.008 < mlp.score.weight.std() < 0.012
    inputs = make_inputs(seed=2)
    with torch.no_grad():
        out = head(**inputs)
        hidden = torch.relu(mlp.fc2(torch.relu(mlp.fc1(inputs["persons"]))))
        expected = mlp.score(hidden) * inputs["person_mask"][..., None]
    torch.testing.assert_close(out.logits, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fusion", [f for f in FUSIONS if f != "none"])
def test_global_feature_is_the_person_plus_the_interaction_feature(fusion):
    head = perturb_outputs(build(fusion, pose_part=False, seed=2))
    inputs = make_inputs(seed=2)
    head.classifier = torch.nn.Identity()  # logits = the global feature itself
    with torch.no_grad():
        sets = head._checked_sets(*(inputs[k] for k in (
            "persons", "person_mask", "objects", "object_mask", "memory", "memory_mask",
            "memory_offset")))
        expected = (inputs["persons"] + head.fusion(sets)) * inputs["person_mask"][..., None]
        torch.testing.assert_close(head(**inputs).logits, expected)


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_new_head_logits_do_not_depend_on_the_context(fusion):
    head = build(fusion, pose_part=False, seed=2).eval()
    inputs = make_inputs(seed=2)
    other = dict(inputs, objects=torch.randn(inputs["objects"].shape),
                 memory=torch.randn(inputs["memory"].shape))
    with torch.no_grad():
        torch.testing.assert_close(head(**inputs).logits, head(**other).logits)


@pytest.mark.parametrize("fusion,pose_part", [("cube", True), ("dense", False)])
def test_every_parameter_learns_after_one_step(fusion, pose_part):
    head = build(fusion, pose_part, seed=3)
    head.train()
    inputs = make_inputs(seed=3)
    targets = torch.zeros(2, 3, CLASSES)
    targets[..., 0], targets[..., 3] = 1, 1
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)

    def step():
        optimizer.zero_grad()
        loss = head_loss(logits=head(**inputs).trained_logits(), targets=targets,
                         person_mask=inputs["person_mask"], pose_classes=POSE, gamma=2.0)
        loss.total.backward()

    step()
    # Zero-initialised output projections pass no gradient inward at step 0 ...
    zero_init = [p for n, p in head.named_parameters() if ".out." in n]
    assert all(p.grad.abs().sum() > 0 for p in zero_init)
    optimizer.step()
    step()
    # ... and after one step every parameter has a gradient.
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_probabilities_average_the_two_classifiers():
    head = build("serial", pose_part=True, seed=4).eval()
    with torch.no_grad():
        out = head(**make_inputs(seed=4))
    expected = (class_probabilities(logits=out.logits, pose_classes=POSE)
                + class_probabilities(logits=out.global_logits, pose_classes=POSE)) / 2
    assert torch.allclose(head_probabilities(out, pose_classes=POSE), expected)
    single = HeadOutput(logits=out.logits, global_logits=None)
    assert torch.allclose(head_probabilities(single, pose_classes=POSE),
                          class_probabilities(logits=out.logits, pose_classes=POSE))


def test_fixed_seed_gives_identical_heads_and_outputs():
    outputs = []
    for _ in range(2):
        head = build("cube", pose_part=True, seed=5).train()
        torch.manual_seed(5)
        outputs.append(head(**make_inputs(seed=5)).logits)
    assert torch.equal(outputs[0], outputs[1])


OTHER_VALUES = dict(padding="attend", attend_self=True, memory_reader="spans",
                    part_pooling="mean")  # each head option's non-default value


def _logits(head):
    head = perturb_outputs(head, seed=2)
    with torch.no_grad():
        return torch.cat(head(**make_inputs(seed=2)).trained_logits(), dim=-1)


@pytest.mark.parametrize("fusion,pose_part", CASES)
def test_an_unused_option_leaves_the_head_as_it_is_and_a_used_one_changes_it(fusion, pose_part):
    """What avapipe report relies on to share a baseline's runs between configs."""
    unused = unused_options(fusion=fusion, pose_part=pose_part)
    default = build(fusion, pose_part, seed=3)
    same = build(fusion, pose_part, seed=3, **{k: OTHER_VALUES[k] for k in unused})
    assert default.state_dict().keys() == same.state_dict().keys()
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in default.state_dict().items())
    assert torch.equal(_logits(default), _logits(same))
    for option in OTHER_VALUES.keys() - set(unused):
        other = _logits(build(fusion, pose_part, seed=3, **{option: OTHER_VALUES[option]}))
        assert not torch.allclose(_logits(default), other), option


def test_unknown_fusion_lists_the_valid_names():
    with pytest.raises(ValueError, match="none, serial, dense, parallel, cube"):
        build("triangle", pose_part=False)


@pytest.mark.parametrize("key,value,message", [
    ("objects", torch.zeros(2, 2, C + 1),
     r"objects has shape \(2, 2, 17\), expected \[2, \*, 16\]"),
    ("person_mask", torch.ones(2, 3), "person_mask has dtype torch.float32"),
    ("memory_offset", torch.zeros(2, 4), "memory_offset has dtype"),
    ("memory_offset", torch.full((2, 4), SPAN + 1), r"memory_offset\[0, 0\] = 3"),
    ("parts", None, "pass parts"),
    ("part_mask", torch.ones(2, 3, 9).bool(), "part_mask has shape"),
])
def test_bad_inputs_name_the_key(key, value, message):
    head = build("cube", pose_part=True)
    inputs = make_inputs()
    inputs[key] = value
    with pytest.raises(HeadInputError, match=message):
        head(**inputs)
