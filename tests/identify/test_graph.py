"""The support graph and its networkx diagnostics."""

from __future__ import annotations

from hlsm.identify.graph import graph_diagnostics, support_graph
from hlsm.programs import Program
from hlsm.spec import Spec
from tests.core.test_design import hand_made


def tiny() -> Spec:
    return Spec(alphabet=3, length=2, skills=("reverse", "sort", "shift_up"), routings=("chain", "restart"))


def test_support_graph_nodes_edges_and_counts() -> None:
    spec, programs = hand_made()
    graph = support_graph(spec, programs)
    S, R = spec.skill_symbols, spec.routing_symbols
    assert set(graph.nodes) == set(S) | set(R)
    assert all(graph.nodes[S[k]] == {"kind": "skill", "name": spec.skills[k]} for k in range(4))
    assert all(graph.nodes[R[m]] == {"kind": "routing", "name": spec.routings[m]} for m in range(3))
    edges = {(u, v): (d["kind"], d["count"]) for u, v, d in graph.edges(data=True)}
    assert edges == {
        (R[0], S[1]): ("context", 2),
        (R[1], S[2]): ("context", 2),
        (R[0], S[2]): ("context", 1),
        (S[1], S[2]): ("successor", 1),
        (S[2], S[2]): ("successor", 1),
        (S[2], S[1]): ("successor", 1),
    }


def test_graph_diagnostics_counts() -> None:
    spec = tiny()
    programs = [Program.atomic(0), Program.from_names(spec, "chain:reverse > chain:sort")]
    diag = graph_diagnostics(spec, programs)
    assert diag["nodes"] == 5
    assert diag["edges"] == 3  # R0->S0, R0->S13 contexts, S0->S13 succession
    assert diag["isolated_symbols"] == [spec.skill_symbols[2], spec.routing_symbols[1]]
