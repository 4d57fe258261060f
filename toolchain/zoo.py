"""The zoo: named architectures, each a function from the input shape, the number of
classes and its options to a graph (runtime/graph.py). Defaults suit small images
(MNIST-size to 32x32); every builder, format and runtime derives from these graphs.

- cnn: the seed's network (two 3x3 convs with max pooling, dense 128).
- mobilenet: MobileNetV2-style: a BN + ReLU6 stem, inverted residual blocks (1x1
  expansion, 3x3 depthwise, linear 1x1 projection, a residual add where shapes match),
  a 1x1 head, global average pooling. `width` scales every layer's channels.
- resnet: ResNet-8-style: a BN + ReLU stem, three basic blocks (16, 32, 64 channels;
  the last two at stride 2 with a 1x1 projection shortcut), global average pooling.
- mlp: dense layers with one activation (NumPy only; the seed's XOR networks).
"""
from __future__ import annotations

NAMES = ("cnn", "mobilenet", "resnet", "mlp")
CUSTOM = "custom"  # a user's own graph, read from a .toml or .json file


def cnn(classes: int) -> list[dict]:
    return [
        {"op": "conv2d", "name": "conv1", "filters": 32}, {"op": "relu", "name": "relu1"},
        {"op": "maxpool", "name": "pool1"},
        {"op": "conv2d", "name": "conv2", "filters": 64}, {"op": "relu", "name": "relu2"},
        {"op": "maxpool", "name": "pool2"},
        {"op": "flatten", "name": "flatten"},
        {"op": "dense", "name": "fc1", "units": 128}, {"op": "relu", "name": "relu3"},
        {"op": "dense", "name": "fc2", "units": classes},
    ]


def _conv_bn(name, filters, kernel=3, stride=1, groups=1, act="relu6", inputs=None) -> list[dict]:
    conv = {"op": "conv2d", "name": name, "filters": filters, "kernel": kernel, "stride": stride,
            "padding": kernel // 2, "groups": groups, "bias": False}
    if inputs:
        conv["inputs"] = [inputs]
    out = [conv, {"op": "batchnorm", "name": f"{name}_bn"}]
    if act:
        out.append({"op": act, "name": f"{name}_{act}"})
    return out


def _channels(c: float) -> int:
    """Channels scaled by the width multiplier, to a multiple of 8 (at least 8)."""
    return max(8, int(c + 4) // 8 * 8)


# (expansion, output channels, blocks, first stride), for 28x28 to 32x32 inputs
MOBILENET_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 1, 2))
MOBILENET_HEAD = 192  # with these blocks: 79 k parameters, an int8 TFLite file of about 130 KB


def mobilenet(classes: int, width: float = 1.0) -> list[dict]:
    stem = _channels(16 * width)
    nodes = _conv_bn("stem", stem)
    prev, cin = nodes[-1]["name"], stem
    for stage, (t, c, n, s) in enumerate(MOBILENET_BLOCKS, 1):
        cout = _channels(c * width)
        for b in range(1, n + 1):
            name, stride = f"b{stage}_{b}", s if b == 1 else 1
            block, src = [], prev
            if t != 1:
                block += _conv_bn(f"{name}_expand", cin * t, kernel=1, inputs=src)
            hidden = cin * t
            block += _conv_bn(f"{name}_dw", hidden, stride=stride, groups=hidden, inputs=None if block else src)
            block += _conv_bn(f"{name}_project", cout, kernel=1, act=None)
            if stride == 1 and cin == cout:
                block.append({"op": "add", "name": f"{name}_add", "inputs": [src, block[-1]["name"]]})
            nodes += block
            prev, cin = block[-1]["name"], cout
    head = _channels(MOBILENET_HEAD * max(width, 1.0))
    nodes += _conv_bn("head", head, kernel=1)
    nodes += [{"op": "gap", "name": "pool"}, {"op": "dropout", "name": "dropout", "rate": 0.2},
              {"op": "dense", "name": "fc", "units": classes}]
    return nodes


RESNET_STAGES = (16, 32, 64)


def resnet(classes: int) -> list[dict]:
    nodes = _conv_bn("stem", RESNET_STAGES[0], act="relu")
    prev, cin = nodes[-1]["name"], RESNET_STAGES[0]
    for i, c in enumerate(RESNET_STAGES, 1):
        stride = 1 if i == 1 else 2
        name = f"b{i}"
        body = _conv_bn(f"{name}_conv1", c, stride=stride, act="relu", inputs=prev)
        body += _conv_bn(f"{name}_conv2", c, act=None)
        shortcut = prev
        if stride != 1 or cin != c:
            body += _conv_bn(f"{name}_short", c, kernel=1, stride=stride, act=None, inputs=prev)
            shortcut = body[-1]["name"]
        body += [{"op": "add", "name": f"{name}_add", "inputs": [f"{name}_conv2_bn", shortcut]},
                 {"op": "relu", "name": f"{name}_relu"}]
        nodes += body
        prev, cin = body[-1]["name"], c
    nodes += [{"op": "gap", "name": "pool"}, {"op": "dense", "name": "fc", "units": classes}]
    return nodes


def mlp(classes: int, hidden: list[int], activation: str) -> list[dict]:
    nodes = [{"op": "flatten", "name": "flatten"}]
    for i, units in enumerate(hidden, 1):
        nodes += [{"op": "dense", "name": f"fc{i}", "units": units}, {"op": activation, "name": f"act{i}"}]
    binary = classes == 2
    nodes.append({"op": "dense", "name": f"fc{len(hidden) + 1}", "units": 1 if binary else classes})
    if binary:
        nodes.append({"op": "binary_logits", "name": "logits"})
    return nodes


def nodes(arch: str, classes: int, width: float = 1.0, hidden=(), activation: str = "relu") -> list[dict]:
    if arch == "mobilenet":
        return mobilenet(classes, width)
    if arch == "mlp":
        return mlp(classes, list(hidden), activation)
    return {"cnn": cnn, "resnet": resnet}[arch](classes)
