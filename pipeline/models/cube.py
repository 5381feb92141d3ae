"""Cube-Fusion: an interaction structure shaped as the cube of subsets of {P, O, M}.

The cube's 8 vertices are the subsets S of the sources {P, O, M}: the state
at S is the person feature after it has interacted with the sources in S.
Its 12 edges each add one source x to a vertex: the edge S -> S ∪ {x} is an
I-block whose query is the state at S and whose context is source x
(for P: the persons' states at S; from the empty vertex, the reduced person
keys, as the first block of a serial chain reads them). Walking from the empty
vertex to the top vertex {P, O, M} along any of the 6 orderings of the
sources is one serial chain; the cube runs all 6 chains with 12 blocks
instead of 18, because chains that share a prefix of sources share its
intermediate state ("minimal redundancy": no pair of (visited set, added
source) is computed twice).

It is built like AlphAction's structures (``avapipe.models.structures``): the
inputs are reduced to the block width d, the empty vertex holds the reduced
person query, the blocks work at d, and the three edges into the top vertex
are the last blocks of their chains, mapping to C through their shortcut
projections. The top vertex's state is the structure's output, which the
head adds to the person feature.

Vertex fusion. A vertex with several incoming edges (2 at the middle level,
3 at the top) mixes their outputs with learned softmax weights per vertex,
starting equal (the mean). Skip. Every edge is a residual block, so every
vertex state is its predecessors' state plus updates: a path of projections
runs from the person feature to every vertex, and the head's sum carries the
person feature itself past the cube (the "skip layers" that keep it from
degrading). With zero-initialised blocks every vertex below the top starts at
the reduced person query.
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor, nn

from avapipe.models.blocks import make_block
from avapipe.models.interaction import SOURCES, KeyframeSets
from avapipe.models.sources import ContextOptions, SourceReducer, attend_source

ROOT_NAME = "root"


def vertex_name(vertex: frozenset[str]) -> str:
    """A vertex's name: its sources in P, O, M order ('root' for the empty set)."""
    return "".join(source for source in SOURCES if source in vertex) or ROOT_NAME


def edge_name(start: frozenset[str], source: str) -> str:
    """The name of the edge start -> start ∪ {source}, e.g. 'PO_to_M'."""
    return f"{vertex_name(start)}_to_{source}"


def cube_vertices() -> list[frozenset[str]]:
    """The 8 subsets of {P, O, M}, ordered by size (so every edge's start comes first)."""
    return [frozenset(subset) for size in range(len(SOURCES) + 1)
            for subset in combinations(SOURCES, size)]


def incoming_edges(vertex: frozenset[str]) -> list[tuple[frozenset[str], str]]:
    """The (start vertex, added source) pairs of the edges that end at vertex."""
    return [(vertex - {source}, source) for source in SOURCES if source in vertex]


class CubeFusion(nn.Module):
    """'cube': 12 I-blocks on the edges of the {P, O, M} subset cube (see module docstring).

    Built with the same arguments as the IA structures; forward(sets) returns
    the top vertex's state, Tensor[B, P, C].
    """

    def __init__(self, *, channels: int, hidden: int, dropout: float,
                 options: ContextOptions) -> None:
        super().__init__()
        self.vertices = cube_vertices()
        top = frozenset(SOURCES)
        self.sources = SourceReducer(channels=channels, hidden=hidden, dropout=dropout,
                                     sources="".join(SOURCES), options=options)
        self.edges = nn.ModuleDict()
        self.mix_logits = nn.ParameterDict()
        for vertex in self.vertices:
            incoming = incoming_edges(vertex)
            for start, source in incoming:
                self.edges[edge_name(start, source)] = make_block(
                    source, hidden=hidden, out_channels=channels if vertex == top else hidden,
                    dropout=dropout, memory_span=options.memory_span,
                    memory_reader=options.memory_reader)
            if len(incoming) > 1:
                self.mix_logits[vertex_name(vertex)] = nn.Parameter(torch.zeros(len(incoming)))

    def forward(self, sets: KeyframeSets) -> Tensor:
        """sets -> Tensor[B, P, C], the state at the top vertex {P, O, M}."""
        return self.vertex_states(sets)[frozenset(SOURCES)]

    def vertex_states(self, sets: KeyframeSets) -> dict[frozenset[str], Tensor]:
        """The state at each of the 8 vertices: Tensor[B, P, d], at the top [B, P, C]."""
        inputs = self.sources(sets)
        states = {frozenset(): inputs.query}
        for vertex in self.vertices[1:]:
            outputs = [attend_source(self.edges[edge_name(start, source)], source,
                                     states[start], inputs, first=not start)
                       for start, source in incoming_edges(vertex)]
            states[vertex] = self._fuse(vertex, outputs)
        return states

    def _fuse(self, vertex: frozenset[str], outputs: list[Tensor]) -> Tensor:
        if len(outputs) == 1:
            return outputs[0]
        weights = torch.softmax(self.mix_logits[vertex_name(vertex)], dim=0)
        return sum(weight * output for weight, output in zip(weights, outputs))
