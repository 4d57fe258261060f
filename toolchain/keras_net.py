"""The Keras twin of a graph (runtime/graph.py), built with the functional API: one
layer per node, named as the node. Takes NHWC float32.

Traps handled here (../shared/notes/models.md measured each):
- Keras's padding="same" at stride 2 pads (0, 1), PyTorch (1, 1): the graph's padding
  is symmetric, so a conv is "same" only at stride 1 with padding kernel // 2, "valid"
  with padding 0, and otherwise an explicit ZeroPadding2D before a "valid" conv;
- BatchNormalization gets the graph's epsilon, and momentum 1 - the graph's (Keras
  weighs the old statistics, PyTorch the new batch);
- a depthwise conv (groups = channels) is a DepthwiseConv2D, which TFLite runs as
  DEPTHWISE_CONV_2D; its kernel is (kh, kw, C, 1), the bridge's business.
"""
from __future__ import annotations

import keras
from keras import layers

from edgecnn.runtime import graph as g


def _layer(node: dict, in_shape: tuple, x):
    op, name = node["op"], node["name"]
    if op == "conv2d":
        k, s, p = node["kernel"], node["stride"], g.padding_of(node)
        padding = "same" if (s == 1 and k % 2 == 1 and p == k // 2) else "valid"
        if padding == "valid" and p:
            x = layers.ZeroPadding2D(p, name=f"{name}_pad")(x)
        if g.is_depthwise(node, in_shape[2]):
            return layers.DepthwiseConv2D(k, s, padding=padding, use_bias=node["bias"], name=name)(x)
        return layers.Conv2D(node["filters"], k, s, padding=padding, use_bias=node["bias"], name=name)(x)
    if op == "dense":
        return layers.Dense(node["units"], use_bias=node["bias"], name=name)(x)
    if op == "batchnorm":
        return layers.BatchNormalization(epsilon=node["eps"], momentum=1 - node["momentum"], name=name)(x)
    if op == "pad":
        return layers.ZeroPadding2D(((node["top"], node["bottom"]), (node["left"], node["right"])), name=name)(x)
    if op in ("maxpool", "avgpool"):
        pool = layers.MaxPooling2D if op == "maxpool" else layers.AveragePooling2D
        return pool(node["size"], g.stride_of(node), name=name)(x)
    if op == "dropout":
        return layers.Dropout(node["rate"], name=name)(x)
    if op == "binary_logits":
        raise ValueError(f"layer {name!r}: binary_logits exists only in NumPy (--framework numpy)")
    make = {"relu": lambda: layers.ReLU(name=name), "relu6": lambda: layers.ReLU(6.0, name=name),
            "sigmoid": lambda: layers.Activation("sigmoid", name=name),
            "gap": lambda: layers.GlobalAveragePooling2D(name=name), "flatten": lambda: layers.Flatten(name=name)}
    return make[op]()(x)


INPUT_NAME = "image"


def build(graph: g.Graph, name: str) -> keras.Model:
    names = {n["name"] for n in graph.nodes}
    clash = [n for n in sorted(names) if n == INPUT_NAME or f"{n}_pad" in names]
    if clash:
        raise ValueError(f"layer {clash[0]!r}: the name is taken by the Keras twin "
                         f"({'its input' if clash[0] == INPUT_NAME else 'the padding of a conv of that name'}); "
                         f"rename the layer")
    image = keras.Input(shape=graph.input_shape, name=INPUT_NAME)
    values = {g.INPUT: image}
    for n in graph.nodes:
        ins = [values[s] for s in n["inputs"]]
        if n["op"] == "add":
            values[n["name"]] = layers.Add(name=n["name"])(ins)
        else:
            values[n["name"]] = _layer(n, graph.in_shapes[n["name"]][0], ins[0])
    return keras.Model(image, values[graph.output], name=name)
