"""The PyTorch twin of a graph (runtime/graph.py): one submodule per node, named as the
node, called in graph order. Takes NCHW float32.

What the other tools need from it:
- tracing (.ptl, ONNX) sees plain module calls, so the exported graph is the graph;
- the residual add is a FloatFunctional, so eager-mode int8 (torch.ao) can observe and
  quantize it;
- global average pooling is AdaptiveAvgPool2d(1) and a flatten, which the quantized
  kernels and the ONNX exporter both have;
- BatchNorm takes the graph's epsilon and momentum (PyTorch's own default epsilon is
  1e-5, Keras's 1e-3: the graph names one value for both).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.ao.nn.quantized import FloatFunctional

from edgecnn.runtime import graph as g


class Add(nn.Module):
    def __init__(self):
        super().__init__()
        self.add = FloatFunctional()

    def forward(self, a, b):
        return self.add.add(a, b)


class GlobalAvgPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.pool(x), 1)


class BinaryLogits(nn.Module):
    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x], 1)


def _module(node: dict, in_shape: tuple) -> nn.Module:
    op = node["op"]
    if op == "conv2d":
        return nn.Conv2d(in_shape[2], node["filters"], node["kernel"], stride=node["stride"],
                         padding=g.padding_of(node), groups=node["groups"], bias=node["bias"])
    if op == "dense":
        return nn.Linear(in_shape[0], node["units"], bias=node["bias"])
    if op == "batchnorm":
        return nn.BatchNorm2d(in_shape[2], eps=node["eps"], momentum=node["momentum"])
    if op == "pad":
        return nn.ZeroPad2d((node["left"], node["right"], node["top"], node["bottom"]))
    if op in ("maxpool", "avgpool"):
        return (nn.MaxPool2d if op == "maxpool" else nn.AvgPool2d)(node["size"], g.stride_of(node))
    if op == "dropout":
        return nn.Dropout(node["rate"])
    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "sigmoid": nn.Sigmoid, "gap": GlobalAvgPool, "add": Add,
            "flatten": nn.Flatten, "binary_logits": BinaryLogits}[op]()


class GraphModule(nn.Module):
    def __init__(self, graph: g.Graph):
        super().__init__()
        self.order = [(n["name"], tuple(n["inputs"])) for n in graph.nodes]
        self.output = graph.output
        for n in graph.nodes:
            self.add_module(n["name"], _module(n, graph.in_shapes[n["name"]][0]))

    def forward(self, x):
        values = {g.INPUT: x}
        for name, inputs in self.order:
            values[name] = getattr(self, name)(*[values[s] for s in inputs])
        return values[self.output]


RESERVED = set(dir(nn.Module())) | {"order", "output"}


def build(graph: g.Graph) -> GraphModule:
    clash = [n["name"] for n in graph.nodes if n["name"] in RESERVED]
    if clash:
        raise ValueError(f"layer {clash[0]!r}: the name is taken by PyTorch's nn.Module; rename the layer")
    return GraphModule(graph)


def count_params(model) -> int:
    """Parameters and BN moving statistics: the values the graph counts (Keras's count)."""
    buffers = sum(b.numel() for k, b in model.named_buffers() if not k.endswith("num_batches_tracked"))
    return sum(p.numel() for p in model.parameters()) + buffers
