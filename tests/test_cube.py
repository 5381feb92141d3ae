import torch

from avapipe.models.cube import (CubeFusion, cube_vertices, edge_name, incoming_edges,
                                 vertex_name)
from avapipe.models.interaction import KeyframeSets
from avapipe.models.sources import ContextOptions, attend_source
from avapipe.models.structures import SerialStructure

C, D, SPAN = 16, 8, 2
OPTIONS = ContextOptions(memory_span=SPAN, memory_per_second=5)


def build(options=OPTIONS):
    return CubeFusion(channels=C, hidden=D, dropout=0.2, options=options)


def perturb_outputs(module, seed=0):
    """Give every zero-initialised output projection random values and switch dropout off."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if ".out." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
            if name.startswith("mix_logits"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return module.eval()


def make_sets(seed=0, persons=(3, 1), objects=(2, 0), memory=(4, 2), fill=None):
    """Padded sets for two keyframes; each tuple gives the real slots per keyframe.

    fill: when given, the value of every padded slot (features and offsets)."""
    generator = torch.Generator().manual_seed(seed)

    def padded(counts):
        mask = torch.arange(max(max(counts), 1))[None, :] < torch.tensor(counts)[:, None]
        features = torch.randn(*mask.shape, C, generator=generator)
        if fill is not None:
            features = torch.where(mask[..., None], features, torch.tensor(fill))
        return features, mask

    persons_, person_mask = padded(persons)
    objects_, object_mask = padded(objects)
    memory_, memory_mask = padded(memory)
    offset = torch.randint(-SPAN, SPAN + 1, memory_mask.shape, generator=generator)
    if fill is not None:
        offset = torch.where(memory_mask, offset, int(fill))
    return KeyframeSets(persons=persons_, person_mask=person_mask, objects=objects_,
                        object_mask=object_mask, memory=memory_, memory_mask=memory_mask,
                        memory_offset=offset)


def test_cube_has_8_vertices_and_12_edges_each_adding_one_source():
    vertices = cube_vertices()
    assert len(vertices) == 8 and len(set(vertices)) == 8
    cube = build()
    assert len(cube.edges) == 12
    expected = {edge_name(vertex - {s}, s) for vertex in vertices for s in vertex}
    assert set(cube.edges) == expected
    assert {"root_to_P", "P_to_O", "PO_to_M", "OM_to_P"} <= set(cube.edges)
    assert sorted(map(len, (incoming_edges(v) for v in vertices))) == [0, 1, 1, 1, 2, 2, 2, 3]
    assert vertex_name(frozenset("MP")) == "PM"
    spans = {name: edge.position_span for name, edge in cube.edges.items()}
    assert all((span == SPAN) == name.endswith("M") for name, span in spans.items())
    # The edges into the top vertex end their chains: they map d to C.
    widths = {name: edge.out.out_features for name, edge in cube.edges.items()}
    assert {name for name, width in widths.items() if width == C} == {
        "PO_to_M", "PM_to_O", "OM_to_P"}


def context_free_top(cube, sets):
    query = cube.sources.query(sets.persons)
    weights = torch.softmax(cube.mix_logits["POM"], dim=0)
    return sum(w * cube.edges[edge_name(start, source)].shortcut(query)
               for w, (start, source) in zip(weights, incoming_edges(frozenset("POM"))))


def test_new_cube_starts_at_the_reduced_query_and_ignores_the_context():
    torch.manual_seed(0)
    sets = make_sets().padded_to_zero()
    cube = build().eval()
    states = cube.vertex_states(sets)
    assert len(states) == 8
    query = cube.sources.query(sets.persons)
    for vertex, state in states.items():
        if len(vertex) < 3:
            torch.testing.assert_close(state, query, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(states[frozenset("POM")], context_free_top(cube, sets))


def test_padded_values_change_nothing():
    torch.manual_seed(1)
    cube = perturb_outputs(build())
    with torch.no_grad():
        first = cube(make_sets(seed=1, fill=0.0).padded_to_zero())
        second = cube(make_sets(seed=1, fill=1e3).padded_to_zero())
    real = make_sets(seed=1).person_mask
    assert first.shape == (2, 3, C)
    assert torch.equal(first[real], second[real])


def test_lone_person_without_objects_or_memory_gets_the_context_free_output():
    torch.manual_seed(2)
    cube = perturb_outputs(build())
    sets = make_sets(persons=(1, 1), objects=(0, 0), memory=(0, 0)).padded_to_zero()
    with torch.no_grad():
        out = cube(sets)
        assert not out.isnan().any()
        torch.testing.assert_close(out, context_free_top(cube, sets), rtol=1e-6, atol=1e-6)


def test_one_hot_vertex_weights_turn_the_cube_into_one_serial_path():
    torch.manual_seed(3)
    cube = perturb_outputs(build(), seed=3)
    path = {"PO": "P_to_O", "POM": "PO_to_M"}
    with torch.no_grad():
        for vertex, logits in cube.mix_logits.items():
            logits.fill_(-1e4)
            if vertex in path:
                names = [edge_name(s, x) for s, x in incoming_edges(frozenset(vertex))]
                logits[names.index(path[vertex])] = 0.0
    serial = SerialStructure(channels=C, hidden=D, dropout=0.0, options=OPTIONS,
                             order="POM").eval()
    serial.sources.load_state_dict(cube.sources.state_dict())
    for index, name in enumerate(["root_to_P", "P_to_O", "PO_to_M"]):
        serial.blocks[index].load_state_dict(cube.edges[name].state_dict())
    sets = make_sets(seed=3).padded_to_zero()
    with torch.no_grad():
        torch.testing.assert_close(cube(sets), serial(sets), rtol=1e-5, atol=1e-5)


def _slow_vertex_state(cube, sets, inputs, vertex):
    """Recursive reference: the softmax-weighted mean of the incoming edges' outputs."""
    if not vertex:
        return inputs.query
    outputs = [attend_source(cube.edges[edge_name(start, source)], source,
                             _slow_vertex_state(cube, sets, inputs, start), inputs,
                             first=not start)
               for start, source in incoming_edges(vertex)]
    if len(outputs) == 1:
        return outputs[0]
    weights = torch.softmax(cube.mix_logits[vertex_name(vertex)], dim=0)
    return sum(w * u for w, u in zip(weights, outputs))


def test_cube_matches_recursive_reference():
    torch.manual_seed(4)
    cube = perturb_outputs(build(), seed=4)
    sets = make_sets(seed=4).padded_to_zero()
    with torch.no_grad():
        want = _slow_vertex_state(cube, sets, cube.sources(sets), frozenset("POM"))
        torch.testing.assert_close(cube(sets), want, rtol=1e-5, atol=1e-5)


def test_every_parameter_gets_gradient_after_outputs_are_perturbed():
    torch.manual_seed(5)
    cube = perturb_outputs(build(), seed=5)
    sets = make_sets(seed=5).padded_to_zero()
    cube(sets)[sets.person_mask].square().sum().backward()
    for name, parameter in cube.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_fixed_seed_gives_identical_results_with_dropout_on():
    seed = 6
    outputs = []
    for _ in range(2):
        torch.manual_seed(seed)
        cube = build().train()
        with torch.no_grad():
            for name, parameter in cube.named_parameters():
                if ".out." in name:
                    parameter.normal_()
        outputs.append(cube(make_sets(seed=seed).padded_to_zero()))
    assert torch.equal(outputs[0], outputs[1])


def test_attend_padding_changes_the_lone_person_and_keeps_the_weights():
    torch.manual_seed(7)
    masked = perturb_outputs(build(), seed=7)
    attend = perturb_outputs(build(ContextOptions(memory_span=SPAN, memory_per_second=5,
                                                  padding="attend", attend_self=True)))
    attend.load_state_dict(masked.state_dict())
    sets = make_sets(persons=(1, 1), objects=(0, 0), memory=(0, 0)).padded_to_zero()
    with torch.no_grad():
        assert not torch.allclose(attend(sets), masked(sets))
