"""Cut a classifier into a prefix and per-layer segments with torch.fx.

NeurFlow needs two functions per pair of consecutive layers (Section 3.3):
``phi^{1,l-1}`` (input -> output of layer l-1, the *prefix*) and ``phi^{l-1,l}`` (output of
layer l-1 -> output of layer l, the *segment*). Like torchvision's
``models/feature_extraction.py`` we trace the model once, address layers by their module
qualified names (``layer4.2``, ``inception5b``) and cut the graph; the requested layers are
traced as leaf modules so that a layer's output is exactly one graph node. A segment is the
same graph with the lower layer's node replaced by a placeholder. If the upper layer reads
anything computed before the cut that does not flow through the lower layer (a skip that
bypasses it), the cut is refused with an error naming the node, instead of returning a
segment that computes something else.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import fx, nn

__all__ = ["ModelSplit", "split_model", "neuron_activations"]


def neuron_activations(output: torch.Tensor) -> torch.Tensor:
    """Reduce a layer output to one value per neuron: the spatial mean.

    A neuron is a channel of a conv map or a unit of a linear layer (Section 3.2).

    Args:
        output: ``[B, C]`` or ``[B, C, *spatial]``.

    Returns:
        ``[B, C]``.
    """
    if output.dim() == 2:
        return output
    if output.dim() < 2:
        raise ValueError(f"layer output must have a batch and a channel axis, got shape {tuple(output.shape)}")
    return output.flatten(2).mean(-1)


class _LayerTracer(fx.Tracer):
    """Traces the requested layers as leaf modules so each is one ``call_module`` node."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self._leaves or super().is_leaf_module(m, module_qualified_name)


@dataclass
class ModelSplit:
    """A traced classifier with its prefix and segments.

    Attributes:
        layers: layer names, logit layer first (the order NeurFlow expands the circuit in).
        graph_module: the traced model (shares parameters with the original model).
        nodes: layer name -> the graph node holding that layer's output.
    """

    layers: tuple[str, ...]
    graph_module: fx.GraphModule
    nodes: dict[str, fx.Node]
    _extractors: dict[tuple[str, ...], fx.GraphModule] = field(default_factory=dict, repr=False)
    _segments: dict[str, fx.GraphModule] = field(default_factory=dict, repr=False)

    def extractor(self, layers: Sequence[str] | None = None) -> fx.GraphModule:
        """The prefix: a module mapping the model input to ``{layer: output}`` for ``layers``.

        Only the nodes needed for the requested layers are kept, so the prefix to a low
        layer does not run the top of the network.
        """
        key = tuple(self.layers if layers is None else layers)
        for name in key:
            self._check_layer(name)
        if key not in self._extractors:
            self._extractors[key] = _extract(self.graph_module, {n: self.nodes[n] for n in key})
        return self._extractors[key]

    def segment(self, upper: str) -> fx.GraphModule:
        """``phi^{l-1,l}``: maps the output of the layer below ``upper`` to ``upper``'s output."""
        self._check_layer(upper)
        i = self.layers.index(upper)
        if i == len(self.layers) - 1:
            raise ValueError(f"layer '{upper}' is the lowest requested layer; it has no segment below it")
        if upper not in self._segments:
            lower = self.layers[i + 1]
            self._segments[upper] = _cut(self.graph_module, self.nodes[lower], self.nodes[upper], lower, upper)
        return self._segments[upper]

    def lower_of(self, upper: str) -> str:
        """The layer directly below ``upper`` in the requested order."""
        self._check_layer(upper)
        i = self.layers.index(upper)
        if i == len(self.layers) - 1:
            raise ValueError(f"layer '{upper}' is the lowest requested layer")
        return self.layers[i + 1]

    def _check_layer(self, name: str) -> None:
        if name not in self.nodes:
            raise ValueError(f"layer '{name}' is not one of the split's layers {list(self.layers)}")


def _unknown_layer_message(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    shown = ", ".join(valid[:60]) + (" ..." if len(valid) > 60 else "")
    return f"unknown layer '{name}'.{hint} Valid layer names: {shown}"


def split_model(model: nn.Module, layers: Sequence[str]) -> ModelSplit:
    """Trace ``model`` and prepare prefix/segment cuts at ``layers``.

    Args:
        model: a classifier; traced in its current mode (call ``model.eval()`` first).
        layers: module qualified names, from the logit layer down (e.g.
            ``["fc", "layer4.2", "layer4.1"]``). Each must be a module called exactly once
            in ``forward``.

    Returns:
        A :class:`ModelSplit`.

    Raises:
        ValueError: empty or duplicated layer list, unknown layer names (the message lists
            the valid ones), a layer called more or less than once, or a layer whose output
            does not feed the next layer up.
    """
    layers = tuple(layers)
    if not layers:
        raise ValueError("the layer list is empty; give at least the logit layer and one layer below it")
    if len(set(layers)) != len(layers):
        raise ValueError(f"duplicate layer names in {list(layers)}")
    modules = dict(model.named_modules())
    valid = [n for n in modules if n]
    for name in layers:
        if name not in modules or not name:
            raise ValueError(_unknown_layer_message(name, valid))
    for name in layers:
        for other in layers:
            if name.startswith(other + "."):
                raise ValueError(f"layer '{name}' is inside layer '{other}'; requested layers must not be nested")

    tracer = _LayerTracer(set(layers))
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # torch.fx raises many types for untraceable code
        raise ValueError(
            f"could not trace {type(model).__name__} with torch.fx ({exc}); "
            "NeurFlow needs an fx-traceable forward between the requested layers"
        ) from exc
    gm = fx.GraphModule(tracer.root, graph)

    nodes: dict[str, fx.Node] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in layers:
            if node.target in nodes:
                raise ValueError(f"layer '{node.target}' is called more than once in forward; pick a module used once")
            nodes[node.target] = node
    for name in layers:
        if name not in nodes:
            raise ValueError(f"layer '{name}' exists but is never called in {type(model).__name__}.forward")
    split = ModelSplit(layers=layers, graph_module=gm, nodes=nodes)
    for upper in layers[:-1]:
        split.segment(upper)  # validate every cut up front
    return split


def _extract(gm: fx.GraphModule, outputs: dict[str, fx.Node]) -> fx.GraphModule:
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    needed = set()
    for node in outputs.values():
        needed |= _ancestors(node, stop=None) | {node}
    wanted = set(outputs.values())
    copies: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        if node in needed:
            env[node] = graph.node_copy(node, lambda n: env[n])
            if node in wanted and any(user in needed for user in node.users):
                # a later op of this prefix may modify the output in place (ReLU(inplace=True)):
                # return a copy taken before that op runs
                copies[node] = graph.call_method("clone", (env[node],))
    graph.output({name: copies.get(node, env[node]) for name, node in outputs.items()})
    graph.lint()
    return fx.GraphModule(gm, graph)


def _ancestors(node: fx.Node, stop: fx.Node | None) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = list(node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n is not stop:
            stack.extend(n.all_input_nodes)
    return seen


def _descendants(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = list(node.users)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.users)
    return seen


def _depends_on_input(node: fx.Node, stop: fx.Node, memo: dict[fx.Node, bool]) -> bool:
    """Whether ``node`` reads the model input through a path that avoids ``stop``."""
    if node in memo:
        return memo[node]
    if node is stop:
        memo[node] = False
    elif node.op == "placeholder":
        memo[node] = True
    else:
        memo[node] = any(_depends_on_input(i, stop, memo) for i in node.all_input_nodes)
    return memo[node]


def _cut(gm: fx.GraphModule, lower: fx.Node, upper: fx.Node, lower_name: str, upper_name: str) -> fx.GraphModule:
    ancestors = _ancestors(upper, stop=lower)
    if lower not in ancestors:
        raise ValueError(f"layer '{upper_name}' does not depend on layer '{lower_name}'; list layers in forward order, logit first")
    memo: dict[fx.Node, bool] = {}
    after_cut = _descendants(lower)
    for node in gm.graph.nodes:  # graph order: report the first place the paths merge
        if node not in after_cut or not (node in ancestors or node is upper):
            continue
        for inp in node.all_input_nodes:
            if inp is not lower and inp not in after_cut and _depends_on_input(inp, lower, memo):
                raise ValueError(
                    f"cannot cut between '{lower_name}' and '{upper_name}': node '{node.name}' reads "
                    f"'{inp.name}', which is computed before '{lower_name}' (a skip connection bypasses "
                    f"the cut). Choose layers at block boundaries."
                )
    graph = fx.Graph()
    # Work on a copy of the input: an in-place op right after the cut (ReLU(inplace=True))
    # would otherwise overwrite the caller's tensor, and autograd refuses in-place ops on the
    # leaf that integrated gradients differentiates.
    env: dict[fx.Node, fx.Node] = {lower: graph.call_method("clone", (graph.placeholder("x"),))}
    for node in gm.graph.nodes:
        if node in ancestors and node is not lower:
            env[node] = graph.node_copy(node, lambda n: env[n])
    env[upper] = graph.node_copy(upper, lambda n: env[n])
    graph.output(env[upper])
    graph.lint()
    return fx.GraphModule(gm, graph)
