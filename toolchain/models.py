"""Model specs by name, and the twin builders: a PyTorch module and a Keras model with
the same layers, the same parameter count and, given the same weights, the same outputs.

The spec includes the input scaling: images arrive as uint8 and are divided by 255, so
every model and every artifact takes float32 in [0, 1]. The PyTorch twin takes NCHW,
the Keras twin NHWC, each its framework's native layout.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import BadInput

ARCHS = ("cnn",)
SCALING = {"input_dtype": "uint8", "divide_by": 255.0, "range": [0.0, 1.0]}


@dataclass
class ModelSpec:
    arch: str
    input_shape: tuple[int, int, int]  # H, W, C
    classes: list[str]
    scaling: dict = field(default_factory=lambda: dict(SCALING))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["layers"] = describe(self)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ModelSpec":
        try:
            spec = cls(arch=d["arch"], input_shape=tuple(int(v) for v in d["input_shape"]),
                       classes=[str(c) for c in d["classes"]], scaling=dict(d["scaling"]))
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"model spec is incomplete or malformed ({e!r})") from None
        check(spec)
        return spec


def check(spec: ModelSpec) -> None:
    if spec.arch not in ARCHS:
        raise BadInput(f"unknown model {spec.arch!r}; choose one of {', '.join(ARCHS)}")
    h, w, _ = spec.input_shape
    if h < 4 or w < 4:
        raise BadInput(f"model {spec.arch!r} needs images of at least 4x4, got {h}x{w}")


def describe(spec: ModelSpec) -> list[str]:
    return ["conv3x3(32, same)", "relu", "maxpool2", "conv3x3(64, same)", "relu", "maxpool2",
            "flatten", "dense(128)", "relu", f"dense({spec.num_classes})"]


def _flat_features(spec: ModelSpec) -> int:
    h, w, _ = spec.input_shape
    return (h // 2 // 2) * (w // 2 // 2) * 64


def build_torch(spec: ModelSpec):
    import torch.nn as nn
    from collections import OrderedDict
    check(spec)
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
