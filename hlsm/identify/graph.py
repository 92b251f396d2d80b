"""The support graph: which symbols meet in which contexts, and its networkx diagnostics.

The graph is the first thing to read about a design before asking the checker (``theory/identifiability.md``):
a symbol with no edge was never shown, a skill met in one context only may be entangled with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import networkx as nx

from hlsm.design import coverage
from hlsm.programs import Program
from hlsm.spec import Spec


def support_graph(spec: Spec, programs: Iterable[Program]) -> nx.DiGraph:
    """Which symbols meet in which contexts.

    Nodes are symbols (attribute ``kind`` = ``"skill"``/``"routing"``, ``name``); an edge
    ``routing -> skill`` (``kind="context"``) joins the two symbols of one step, an edge
    ``skill -> skill`` (``kind="successor"``) joins consecutive skills; ``count`` is how many
    program steps realise it.
    """
    graph = nx.DiGraph()
    for k, name in enumerate(spec.skills):
        graph.add_node(spec.skill_symbols[k], kind="skill", name=name)
    for m, name in enumerate(spec.routings):
        graph.add_node(spec.routing_symbols[m], kind="routing", name=name)
    cov = coverage(spec, programs)
    for (m, k), c in cov.contexts.items():
        graph.add_edge(spec.routing_symbols[m], spec.skill_symbols[k], kind="context", count=c)
    for (a, b), c in cov.pairs.items():
        u, v = spec.skill_symbols[a], spec.skill_symbols[b]
        if graph.has_edge(u, v):
            graph[u][v]["count"] += c
        else:
            graph.add_edge(u, v, kind="successor", count=c)
    return graph


def graph_record(spec: Spec, programs: Iterable[Program]) -> dict[str, Any]:
    """The support graph as plain data (networkx node-link form: ``nodes`` with ``id``, ``kind``,
    ``name``; ``edges`` with ``source``, ``target``, ``kind``, ``count``), for saving and drawing."""
    return nx.node_link_data(support_graph(spec, programs), edges="edges")


def graph_diagnostics(spec: Spec, programs: Sequence[Program]) -> dict[str, Any]:
    """networkx diagnostics of the support graph: components, degrees, symbols never met."""
    graph = support_graph(spec, programs)
    undirected = graph.to_undirected()
    isolated = [n for n in graph.nodes if graph.degree(n) == 0]
    return {
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "components": nx.number_connected_components(undirected),
        "isolated_symbols": isolated,
        "context_degree": {n: graph.out_degree(n) for n, d in graph.nodes(data=True) if d["kind"] == "routing"},
        "skill_contexts": {
            n: sum(1 for u, _, e in graph.in_edges(n, data=True) if e["kind"] == "context")
            for n, d in graph.nodes(data=True)
            if d["kind"] == "skill"
        },
    }
