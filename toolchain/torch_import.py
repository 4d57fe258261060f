"""A user's PyTorch module, read as edgecnn's graph vocabulary (runtime/graph.py).

`to_nodes(module, input_shape)` traces the module with torch.fx and returns graph nodes
named after its submodules, or raises NotVocabulary naming the first call the graph
cannot express. `copy_weights` then fills the graph's own PyTorch twin
(toolchain/torch_net.py) from the module: the twin's submodules are named as the nodes
and hold the same tensors under the same names (both are PyTorch, NCHW).

What maps: nn.Conv2d (square kernel and stride, zero padding, no dilation; groups 1 or
depthwise), nn.BatchNorm2d (affine, with running statistics), nn.ReLU, nn.ReLU6,
nn.Sigmoid, nn.MaxPool2d and nn.AvgPool2d (no padding, floor), nn.AdaptiveAvgPool2d(1)
and torch.mean over H and W (global average pooling), nn.Flatten, torch.flatten(x, 1) and
x.view(x.size(0), -1) or reshape,
nn.Linear, nn.Dropout, nn.ZeroPad2d, nn.Identity, `+` / torch.add of two tensors,
F.relu, F.relu6, torch.sigmoid, x.relu() and x.sigmoid(). A softmax at the output is dropped, as for Keras.
"""
from __future__ import annotations

import operator

from edgecnn.runtime import graph as g

from .errors import brief
from .vocabulary import NotVocabulary, node_name, square as _one


def to_nodes(module, reserved=frozenset()) -> tuple[list[dict], dict[str, str], bool]:
    """(graph nodes, {node name: the submodule whose tensors it takes}, whether a final
    softmax was dropped). No node takes a name in `reserved`."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch import fx
    try:
        traced = fx.symbolic_trace(module)
    except Exception as e:  # FX raises many types on code it cannot trace
        raise NotVocabulary(f"torch.fx cannot trace it ({brief(e)})") from None
    nodes: list[dict] = []
    sources: dict[str, str] = {}
    names: dict = {}          # fx node -> graph node name (or the input)
    vectors: set = set()      # graph names whose value is a vector, not a feature map
    sizes: set = set()        # fx nodes that read the batch size
    taken: set = set()
    dropped_softmax = False
    output = next(n for n in traced.graph.nodes if n.op == "output").args[0]

    def add(node: dict, raw: str, inputs: list[str]) -> str:
        name = node_name(raw, taken, reserved)
        node.update(name=name, inputs=inputs)
        nodes.append(node)
        if node["op"] in ("dense", "gap", "flatten") or (node["op"] in ("relu", "relu6", "sigmoid", "dropout")
                                                        and inputs[0] in vectors):
            vectors.add(name)
        return name

    def tensor_args(n):
        return [a for a in n.args if isinstance(a, fx.Node)]

    for n in traced.graph.nodes:
        where = f"{n.op} {n.target}" if n.op != "call_module" else f"module {n.target!r}"
        if n.op == "placeholder":
            if names:
                raise NotVocabulary("it takes more than one input")
            names[n] = g.INPUT
            continue
        if n.op == "output":
            continue
        if n.op == "get_attr":
            raise NotVocabulary(f"it reads the tensor {n.target!r} directly; edgecnn's graph holds only layers")
        if (n.op == "call_method" and n.target == "size") or (
                n.op == "call_function" and n.target is getattr and n.args[1:] == ("shape",)) or (
                n.op == "call_function" and n.target is operator.getitem and n.args[0] in sizes):
            sizes.add(n)  # the batch size, read for a view(x.size(0), -1): not a layer
            continue
        if n.op == "call_method" and n.target in ("view", "reshape"):
            shape = n.args[1:]
            batch_first = len(shape) == 2 and shape[1] == -1 and (shape[0] in sizes or shape[0] == -1)
            if not (batch_first or (len(shape) == 2 and shape[0] == -1 and type(shape[1]) is int)) \
                    or n.args[0] not in names:
                raise NotVocabulary(f"{where}: a {n.target} other than to (batch, features); "
                                    f"torch.flatten(x, 1) says it plainly")
            src = names[n.args[0]]
            names[n] = src if src in vectors else add({"op": "flatten"}, n.name, [src])
            continue
        ins = [names[a] for a in tensor_args(n) if a in names]
        if len(ins) != len(tensor_args(n)) or n.kwargs and any(isinstance(v, fx.Node) for v in n.kwargs.values()):
            raise NotVocabulary(f"{where}: takes a tensor that is not a layer's output, or as a keyword")
        if not ins:
            raise NotVocabulary(f"{where}: takes no layer's output")
        if len(ins) > 1 and not (n.op == "call_function" and n.target in (operator.add, torch.add)):
            raise NotVocabulary(f"{where}: takes {len(ins)} tensors")
        if n.op == "call_module":
            m = traced.get_submodule(n.target)
            kind = type(m)
            if kind is nn.Conv2d:
                k, s = _one(m.kernel_size, "kernel", where), _one(m.stride, "stride", where)
                if _one(m.dilation, "dilation", where) != 1 or m.padding_mode != "zeros":
                    raise NotVocabulary(f"{where}: dilation or non-zero padding is not in edgecnn's graph")
                if isinstance(m.padding, str):
                    if m.padding == "same" and k % 2 == 0:
                        raise NotVocabulary(f"{where}: padding 'same' with an even kernel")
                    padding = 0 if m.padding == "valid" else k // 2
                else:
                    padding = _one(m.padding, "padding", where)
                if m.groups not in (1, m.in_channels) or (m.groups > 1 and m.out_channels != m.in_channels):
                    raise NotVocabulary(f"{where}: grouped convolution (groups {m.groups})")
                out = add({"op": "conv2d", "filters": m.out_channels, "kernel": k, "stride": s, "padding": padding,
                           "groups": m.groups, "bias": m.bias is not None}, n.target, ins)
                sources[out] = n.target
            elif kind is nn.BatchNorm2d:
                if not (m.affine and m.track_running_stats):
                    raise NotVocabulary(f"{where}: BatchNorm2d without affine parameters or running statistics")
                out = add({"op": "batchnorm", "eps": float(m.eps), "momentum": float(m.momentum or 0.1)},
                          n.target, ins)
                sources[out] = n.target
            elif kind in (nn.ReLU, nn.ReLU6, nn.Sigmoid):
                out = add({"op": {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Sigmoid: "sigmoid"}[kind]}, n.target, ins)
            elif kind in (nn.MaxPool2d, nn.AvgPool2d):
                size = _one(m.kernel_size, "kernel", where)
                stride = _one(m.stride if m.stride is not None else m.kernel_size, "stride", where)
                if (_one(m.padding, "padding", where) or m.ceil_mode or getattr(m, "dilation", 1) not in (1, (1, 1))
                        or getattr(m, "divisor_override", None) is not None or getattr(m, "return_indices", False)):
                    raise NotVocabulary(f"{where}: pooling with padding, ceil_mode, dilation, a divisor override "
                                        f"or indices")
                out = add({"op": "maxpool" if kind is nn.MaxPool2d else "avgpool", "size": size, "stride": stride},
                          n.target, ins)
            elif kind is nn.AdaptiveAvgPool2d:
                if _one(m.output_size, "output size", where) != 1:
                    raise NotVocabulary(f"{where}: adaptive pooling to other than 1x1")
                out = add({"op": "gap"}, n.target, ins)  # (N, C, 1, 1) in PyTorch: its flatten is a no-op
            elif kind is nn.Flatten:
                if m.start_dim != 1 or m.end_dim != -1:
                    raise NotVocabulary(f"{where}: flatten from dimension {m.start_dim}")
                out = ins[0] if ins[0] in vectors else add({"op": "flatten"}, n.target, ins)
            elif kind is nn.Linear:
                out = add({"op": "dense", "units": m.out_features, "bias": m.bias is not None}, n.target, ins)
                sources[out] = n.target
            elif kind is nn.Dropout:
                out = add({"op": "dropout", "rate": float(m.p)}, n.target, ins)
            elif kind is nn.ZeroPad2d:
                left, right, top, bottom = m.padding
                out = add({"op": "pad", "top": top, "bottom": bottom, "left": left, "right": right}, n.target, ins)
            elif kind is nn.Identity:
                out = ins[0]
            elif kind is nn.Softmax and n is output:
                dropped_softmax, out = True, ins[0]
            else:
                raise NotVocabulary(f"{where} is a {kind.__name__}, which is not in edgecnn's graph")
        elif n.op == "call_function" and n.target in (operator.add, torch.add):
            if len(ins) != 2 or len(n.args) != 2 or n.kwargs:
                raise NotVocabulary(f"{where}: adds something other than two layers' outputs")
            out = add({"op": "add"}, n.name, ins)
        elif n.op == "call_function" and n.target in (F.relu, torch.relu, F.relu6, torch.sigmoid, F.sigmoid):
            op = {F.relu6: "relu6", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid"}.get(n.target, "relu")
            out = add({"op": op}, n.name, ins)
        elif n.op == "call_method" and n.target in ("relu", "sigmoid") and len(n.args) == 1:
            out = add({"op": n.target}, n.name, ins)
        elif (n.op == "call_function" and n.target is torch.flatten) or (n.op == "call_method"
                                                                          and n.target == "flatten"):
            start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
            end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
            if start != 1 or end != -1:
                raise NotVocabulary(f"{where}: flatten of dimensions {start} to {end} (1 to -1 only)")
            out = ins[0] if ins[0] in vectors else add({"op": "flatten"}, n.name, ins)
        elif (n.op == "call_function" and n.target is torch.mean) or (n.op == "call_method" and n.target == "mean"):
            dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
            keepdim = n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False)
            if sorted(tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)) not in ([2, 3], [-2, -1]) \
                    or keepdim:
                raise NotVocabulary(f"{where}: a mean over other than height and width")
            out = add({"op": "gap"}, n.name, ins)
        elif (n.op == "call_function" and n.target in (F.softmax, torch.softmax)) or (
                n.op == "call_method" and n.target == "softmax"):
            if n is not output:
                raise NotVocabulary(f"{where}: a softmax inside the model")
            dropped_softmax, out = True, ins[0]
        else:
            raise NotVocabulary(f"{where} is not in edgecnn's graph")
        names[n] = out
    if not isinstance(output, fx.Node) or output not in names:
        raise NotVocabulary("its output is not one tensor")
    if not nodes or names[output] != nodes[-1]["name"]:
        raise NotVocabulary("its output is not its last layer")
    return nodes, sources, dropped_softmax


def copy_weights(module, twin, sources: dict[str, str]) -> None:
    """The module's tensors into the graph's PyTorch twin, submodule by submodule."""
    for node, path in sources.items():
        getattr(twin, node).load_state_dict(module.get_submodule(path).state_dict())
