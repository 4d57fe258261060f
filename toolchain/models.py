"""Model specs by name, and the twin builders: a PyTorch module and a Keras model with
the same layers, the same parameter count and, given the same weights, the same outputs.

The spec includes the input scaling: images arrive as uint8 and are divided by 255, so
every model and every artifact takes float32 in [0, 1]. The PyTorch twin takes NCHW,
the Keras twin NHWC, each its framework's native layout.

A third builder makes the same `cnn` as a NumPy network (edgecnn.runtime.npnet), with
the parameter names of the other two. The `mlp` spec (hidden sizes and one activation)
exists only in NumPy: it is the from-scratch network of the project's seed, which
learns XOR with 2-4-1 and 2-4-4-1 sigmoid layers. With two classes its output is one
unit, read as [0, z] logits (softmax of those is the seed's sigmoid output).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from edgecnn.runtime.npnet import MAX_PARAMS  # a file npnet would refuse must not be trained

from .errors import BadInput

ARCHS = ("cnn", "mlp")
ACTIVATIONS = ("relu", "sigmoid")
MAX_HIDDEN_LAYERS, MAX_UNITS = 16, 4096
SCALING = {"input_dtype": "uint8", "divide_by": 255.0, "range": [0.0, 1.0]}


@dataclass
class ModelSpec:
    arch: str
    input_shape: tuple[int, int, int]  # H, W, C
    classes: list[str]
    scaling: dict = field(default_factory=lambda: dict(SCALING))
    hidden: list[int] = field(default_factory=list)  # mlp only: units per hidden layer
    activation: str = "relu"                          # mlp only: after each hidden layer

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        if self.arch != "mlp":
            del d["hidden"], d["activation"]
        d["layers"] = describe(self)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ModelSpec":
        """A spec from spec.json, every field checked: the file may be hand-edited or damaged."""
        def bad(what):
            raise BadInput(f"model spec: {what}")
        if not isinstance(d.get("arch"), str):
            bad("arch is not a name")
        shape = d.get("input_shape")
        if not (isinstance(shape, list) and len(shape) == 3 and all(type(v) is int for v in shape)):
            bad("input_shape is not [height, width, channels]")
        classes = d.get("classes")
        if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            bad("classes is not a list of names")
        scaling = d.get("scaling")
        divide_by = scaling.get("divide_by") if isinstance(scaling, dict) else None
        if not (type(divide_by) in (int, float) and math.isfinite(divide_by) and divide_by > 0):
            bad("scaling is not {'divide_by': a positive number, ...}")
        extra = {}
        if d["arch"] == "mlp":
            hidden, activation = d.get("hidden"), d.get("activation")
            if not (isinstance(hidden, list) and all(type(v) is int for v in hidden)):
                bad("hidden is not a list of layer sizes")
            if not isinstance(activation, str):
                bad("activation is not a name")
            extra = {"hidden": list(hidden), "activation": activation}
        spec = cls(arch=d["arch"], input_shape=tuple(shape), classes=list(classes), scaling=dict(scaling),
                   **extra)
        check(spec)
        return spec


MAX_SIDE = 1024     # the CNNs here are for small images; bigger ones need another arch
MAX_CLASSES = 1000


def check(spec: ModelSpec) -> None:
    if spec.arch not in ARCHS:
        raise BadInput(f"unknown model {str(spec.arch)[:40]!r}; choose one of {', '.join(ARCHS)}")
    h, w, c = spec.input_shape
    smallest = 1 if spec.arch == "mlp" else 4  # the cnn pools twice
    if not (smallest <= h <= MAX_SIDE and smallest <= w <= MAX_SIDE):
        raise BadInput(f"model {spec.arch!r} takes images from {smallest}x{smallest} to {MAX_SIDE}x{MAX_SIDE}, "
                       f"got {h}x{w}")
    if c not in (1, 3):
        raise BadInput(f"model {spec.arch!r} takes 1 or 3 channels, got {c}")
    if not 2 <= len(spec.classes) <= MAX_CLASSES:
        raise BadInput(f"model {spec.arch!r} needs 2 to {MAX_CLASSES} classes, got {len(spec.classes)}")
    if spec.arch == "mlp":
        if not (1 <= len(spec.hidden) <= MAX_HIDDEN_LAYERS and all(1 <= u <= MAX_UNITS for u in spec.hidden)):
            raise BadInput(f"model 'mlp' takes 1 to {MAX_HIDDEN_LAYERS} hidden layers of 1 to {MAX_UNITS} units, "
                           f"got {spec.hidden}")
        if spec.activation not in ACTIVATIONS:
            raise BadInput(f"unknown activation {str(spec.activation)[:40]!r}; choose one of {', '.join(ACTIVATIONS)}")
    params = count_params(spec)
    if params > MAX_PARAMS:
        raise BadInput(f"model {spec.arch!r} on {h}x{w}x{c} images would have {params:,} parameters; "
                       f"edgecnn's limit for an edge model is {MAX_PARAMS:,}")


def count_params(spec: ModelSpec) -> int:
    """The parameter count of the spec's network (the same in every framework), from
    its layer list alone."""
    total, shape = 0, spec.input_shape
    for cfg in numpy_layers(spec):
        if cfg["type"] == "conv2d":
            k, cin = cfg["size"], shape[2]
            total += k * k * cin * cfg["filters"] + cfg["filters"]
            shape = (shape[0], shape[1], cfg["filters"])
        elif cfg["type"] == "maxpool":
            shape = (shape[0] // cfg["size"], shape[1] // cfg["size"], shape[2])
        elif cfg["type"] == "flatten":
            shape = (math.prod(shape),)
        elif cfg["type"] == "dense":
            total += shape[0] * cfg["units"] + cfg["units"]
            shape = (cfg["units"],)
    return total


def _mlp_outputs(spec: ModelSpec) -> int:
    return 1 if spec.num_classes == 2 else spec.num_classes


def describe(spec: ModelSpec) -> list[str]:
    if spec.arch == "mlp":
        hidden = [s for u in spec.hidden for s in (f"dense({u})", spec.activation)]
        head = ["dense(1)", "binary_logits"] if _mlp_outputs(spec) == 1 else [f"dense({spec.num_classes})"]
        return ["flatten", *hidden, *head]
    return ["conv3x3(32, same)", "relu", "maxpool2", "conv3x3(64, same)", "relu", "maxpool2",
            "flatten", "dense(128)", "relu", f"dense({spec.num_classes})"]


def flatten_shape(spec: ModelSpec) -> tuple[int, int, int]:
    """The cnn's feature map where it is flattened, (H, W, C): the weight bridge needs it."""
    h, w, _ = spec.input_shape
    return (h // 2 // 2, w // 2 // 2, 64)


def _flat_features(spec: ModelSpec) -> int:
    h, w, c = flatten_shape(spec)
    return h * w * c


def _numpy_only(spec: ModelSpec) -> None:
    if spec.arch != "cnn":
        raise BadInput(f"the {spec.arch} spec exists only in NumPy: train it with --framework numpy "
                       f"and export it with --formats numpy")


def numpy_layers(spec: ModelSpec) -> list[dict]:
    """The NumPy network's layers as its file describes them (npnet's Layer.config), so
    that a loaded file is checked against spec.json without allocating a network."""
    def dense(name, units):
        return {"type": "dense", "name": name, "units": units}

    if spec.arch == "cnn":
        def conv(name, filters):
            return {"type": "conv2d", "name": name, "filters": filters, "size": 3, "padding": "same"}
        relu, pool = {"type": "relu"}, {"type": "maxpool", "size": 2}
        return [conv("conv1", 32), relu, pool, conv("conv2", 64), relu, pool, {"type": "flatten"},
                dense("fc1", 128), relu, dense("fc2", spec.num_classes)]
    layers = [{"type": "flatten"}]
    for i, units in enumerate(spec.hidden, 1):
        layers += [dense(f"fc{i}", units), {"type": spec.activation}]
    layers.append(dense(f"fc{len(spec.hidden) + 1}", _mlp_outputs(spec)))
    if _mlp_outputs(spec) == 1:
        layers.append({"type": "binary_logits"})
    return layers


def build_numpy(spec: ModelSpec, seed: int = 0, dtype=np.float32):
    """The NumPy network that numpy_layers describes, initialised as PyTorch initialises
    its layers by default: weights and biases uniform in +-1/sqrt(fan_in)."""
    from edgecnn.runtime import npnet
    check(spec)
    rng = np.random.default_rng(seed)

    def uniform(shape, fan_in):
        bound = 1 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape).astype(dtype)

    layers, shape = [], spec.input_shape
    for cfg in numpy_layers(spec):
        kind = cfg["type"]
        if kind == "conv2d":
            k, cin, cout = cfg["size"], shape[2], cfg["filters"]
            fan_in = k * k * cin
            layer = npnet.Conv2D(cfg["name"], uniform((k, k, cin, cout), fan_in), uniform((cout,), fan_in))
        elif kind == "dense":
            layer = npnet.Dense(cfg["name"], uniform((shape[0], cfg["units"]), shape[0]),
                                uniform((cfg["units"],), shape[0]))
        elif kind == "maxpool":
            layer = npnet.MaxPool(cfg["size"])
        else:
            layer = npnet.LAYERS[kind]()
        shape = layer.out_shape(shape)
        layers.append(layer)
    return npnet.Sequential(layers, spec.input_shape)


def build_torch(spec: ModelSpec):
    import torch.nn as nn
    from collections import OrderedDict
    check(spec)
    _numpy_only(spec)
    c = spec.input_shape[2]
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(c, 32, 3, padding=1)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(32, 64, 3, padding=1)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(_flat_features(spec), 128)),
        ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(128, spec.num_classes)),
    ]))


def build_keras(spec: ModelSpec):
    import keras
    from keras import layers
    check(spec)
    _numpy_only(spec)
    return keras.Sequential([
        keras.Input(shape=spec.input_shape, name="image"),
        layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(128, activation="relu", name="fc1"),
        layers.Dense(spec.num_classes, name="fc2"),
    ], name=spec.arch)


def count_params_torch(model) -> int:
    return sum(p.numel() for p in model.parameters())
