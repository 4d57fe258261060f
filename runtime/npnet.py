"""The NumPy network: layers written by hand in NumPy, each with a forward pass and a
backward pass, a Sequential container, and the `.npz` file that holds one.

Written by hand on purpose: this is edgecnn's from-scratch framework (`edgecnn train
--framework numpy`) and its dependency-free runtime (runtime/numpyrt.py), so nothing
but NumPy may run here. Training uses `forward(train=True)` and `backward`; inference
uses `forward` alone. Layouts are NHWC, conv kernels (kh, kw, in, out) and dense
kernels (in, out), which are Keras's layouts; the weight bridge maps them to PyTorch's.
Every op works in the dtype of its input and parameters (float32 to train and run,
float64 for the gradient check in tests/test_npnet.py).

The file is an uncompressed `.npz` read with allow_pickle=False: one array per
parameter ("conv1.kernel", ...) and "__model__", the JSON description of the layers and
the input (uint8 bytes). `load` checks every array's presence, dtype and shape against
that description before anything runs.
"""
from __future__ import annotations

import json
import math

import numpy as np

FILE_FORMAT, FILE_VERSION = "edgecnn-numpy", 1
META_KEY = "__model__"
# Limits that keep a hostile file from costing unbounded memory or time; far above any
# edge model (the MNIST cnn has 0.4 M parameters in a 1.6 MB file).
MAX_LAYERS, MAX_PARAMS, MAX_BYTES = 64, 200_000_000, 1 << 30
MAX_SIDE, MAX_KERNEL, MAX_META = 4096, 15, 1 << 20


class ModelFileError(Exception):
    """The file is not a readable NumPy network."""


class Layer:
    kind = ""

    def __init__(self, name: str = ""):
        self.name = name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def config(self) -> dict:
        return {"type": self.kind, **({"name": self.name} if self.name else {})}

    def out_shape(self, shape: tuple) -> tuple:
        """The per-sample output shape for a per-sample input shape; ValueError if it does not fit."""
        return shape

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Gradients of the parameters (into self.grads) and of the input, from the
        gradient of the output; uses what the last forward(train=True) kept."""
        raise NotImplementedError


class Dense(Layer):
    kind = "dense"

    def __init__(self, name, kernel, bias):
        super().__init__(name)
        self.params = {"kernel": kernel, "bias": bias}

    def config(self):
        return dict(super().config(), units=int(self.params["kernel"].shape[1]))

    def out_shape(self, shape):
        if len(shape) != 1 or shape[0] != self.params["kernel"].shape[0]:
            raise ValueError(f"{self.name} takes {self.params['kernel'].shape[0]} features, gets {shape}")
        return (self.params["kernel"].shape[1],)

    def forward(self, x, train=False):
        if train:
            self.x = x
        y = x @ self.params["kernel"]
        y += self.params["bias"]
        return y

    def backward(self, dy, need_dx=True):
        self.grads = {"kernel": self.x.T @ dy, "bias": dy.sum(0)}
        return dy @ self.params["kernel"].T if need_dx else None


class Conv2D(Layer):
    """Stride 1, "same" zero padding, odd square kernels, as im2col and one matrix product."""
    kind = "conv2d"

    def __init__(self, name, kernel, bias):
        super().__init__(name)
        kh, kw = kernel.shape[:2]
        if kh != kw or kh % 2 != 1 or kh > MAX_KERNEL:
            raise ValueError(f"{name}: kernel {kh}x{kw} is not odd, square and at most {MAX_KERNEL}")
        self.params = {"kernel": kernel, "bias": bias}

    def config(self):
        kh, _, _, cout = self.params["kernel"].shape
        return dict(super().config(), filters=int(cout), size=int(kh), padding="same")

    def out_shape(self, shape):
        kernel = self.params["kernel"]
        if len(shape) != 3 or shape[2] != kernel.shape[2]:
            raise ValueError(f"{self.name} takes {kernel.shape[2]} channels, gets {shape}")
        return (shape[0], shape[1], kernel.shape[3])

    def _cols(self, x):
        n, h, w, c = x.shape
        k = self.params["kernel"].shape[0]
        p = k // 2
        padded = np.zeros((n, h + 2 * p, w + 2 * p, c), x.dtype)
        padded[:, p:p + h, p:p + w] = x
        # one copy per kernel tap, each contiguous in channels: faster here than
        # reshaping a sliding_window_view, which copies with a 6-D stride pattern
        cols = np.empty((n, h, w, k, k, c), x.dtype)
        for i in range(k):
            for j in range(k):
                cols[:, :, :, i, j] = padded[:, i:i + h, j:j + w]
        return cols.reshape(n * h * w, k * k * c)

    def forward(self, x, train=False):
        n, h, w, _ = x.shape
        kernel = self.params["kernel"]
        cols = self._cols(x)
        if train:
            self.cols, self.in_shape = cols, x.shape
        y = cols @ kernel.reshape(-1, kernel.shape[3])
        y += self.params["bias"]
        return y.reshape(n, h, w, kernel.shape[3])

    def backward(self, dy, need_dx=True):
        kernel = self.params["kernel"]
        k, _, c, cout = kernel.shape
        dy2 = dy.reshape(-1, cout)
        self.grads = {"kernel": (self.cols.T @ dy2).reshape(kernel.shape), "bias": dy2.sum(0)}
        if not need_dx:
            return None
        n, h, w, _ = self.in_shape
        p = k // 2
        dcols = (dy2 @ kernel.reshape(-1, cout).T).reshape(n, h, w, k, k, c)
        dpad = np.zeros((n, h + 2 * p, w + 2 * p, c), dy.dtype)
        for i in range(k):  # col2im: each tap's gradient goes back where its pixels came from
            for j in range(k):
                dpad[:, i:i + h, j:j + w] += dcols[:, :, :, i, j]
        return dpad[:, p:p + h, p:p + w]


class MaxPool(Layer):
    """size x size windows, stride size; a ragged last row or column is dropped (floor),
    as in PyTorch's MaxPool2d and Keras's "valid" pooling."""
    kind = "maxpool"

    def __init__(self, size: int = 2):
        super().__init__()
        self.size = int(size)

    def config(self):
        return dict(super().config(), size=self.size)

    def out_shape(self, shape):
        if len(shape) != 3 or shape[0] < self.size or shape[1] < self.size:
            raise ValueError(f"maxpool{self.size} needs an image of at least {self.size}x{self.size}, gets {shape}")
        return (shape[0] // self.size, shape[1] // self.size, shape[2])

    def forward(self, x, train=False):
        n, h, w, c = x.shape
        s = self.size
        h2, w2 = h // s, w // s
        if not train:
            # one np.maximum per window position, each over a strided view that is
            # contiguous in channels: 2-3x faster here than reducing a 6-D reshape
            y = x[:, :h2 * s:s, :w2 * s:s].copy()
            for i in range(s):
                for j in range(s):
                    if i or j:
                        np.maximum(y, x[:, i:h2 * s:s, j:w2 * s:s], out=y)
            return y
        blocks = x[:, :h2 * s, :w2 * s].reshape(n, h2, s, w2, s, c)
        windows = blocks.transpose(0, 1, 3, 5, 2, 4).reshape(n, h2, w2, c, s * s)
        self.argmax, self.in_shape = windows.argmax(-1)[..., None], x.shape  # first maximum, as PyTorch
        return np.take_along_axis(windows, self.argmax, -1)[..., 0]

    def backward(self, dy, need_dx=True):
        n, h, w, c = self.in_shape
        s = self.size
        h2, w2 = dy.shape[1:3]
        d = np.zeros((n, h2, w2, c, s * s), dy.dtype)
        np.put_along_axis(d, self.argmax, dy[..., None], -1)
        dx = np.zeros(self.in_shape, dy.dtype)
        dx[:, :h2 * s, :w2 * s] = d.reshape(n, h2, w2, c, s, s).transpose(0, 1, 4, 2, 5, 3).reshape(
            n, h2 * s, w2 * s, c)
        return dx


class ReLU(Layer):
    kind = "relu"

    def forward(self, x, train=False):
        if train:
            self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, dy, need_dx=True):
        return dy * self.mask


class Sigmoid(Layer):
    kind = "sigmoid"

    def forward(self, x, train=False):
        e = np.exp(-np.abs(x))  # never overflows: the two branches below are the same function
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        if train:
            self.y = y
        return y

    def backward(self, dy, need_dx=True):
        return dy * self.y * (1 - self.y)


class Flatten(Layer):
    """(N, H, W, C) to (N, H*W*C), in NHWC order."""
    kind = "flatten"

    def out_shape(self, shape):
        return (math.prod(shape),)

    def forward(self, x, train=False):
        if train:
            self.in_shape = x.shape
        return x.reshape(len(x), math.prod(x.shape[1:]))  # -1 cannot size an empty batch

    def backward(self, dy, need_dx=True):
        return dy.reshape(self.in_shape)


class BinaryLogits(Layer):
    """One output unit z to the two logits [0, z]: softmax over them is [1 - sigmoid(z),
    sigmoid(z)], so a single sigmoid output (the seed's XOR networks) is trained by
    softmax cross-entropy and read like every other classifier."""
    kind = "binary_logits"

    def out_shape(self, shape):
        if shape != (1,):
            raise ValueError(f"binary_logits takes one unit, gets {shape}")
        return (2,)

    def forward(self, x, train=False):
        return np.concatenate([np.zeros_like(x), x], axis=1)

    def backward(self, dy, need_dx=True):
        return dy[:, 1:2]


LAYERS = {cls.kind: cls for cls in (Dense, Conv2D, MaxPool, ReLU, Sigmoid, Flatten, BinaryLogits)}
PARAMETRIC = ("dense", "conv2d")


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient."""
    n = len(labels)
    z = logits - logits.max(1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(1, keepdims=True))
    rows = np.arange(n)
    loss = -float(log_probs[rows, labels].mean())
    grad = np.exp(log_probs)
    grad[rows, labels] -= 1
    grad /= n
    return loss, grad


class Sequential:
    def __init__(self, layers: list[Layer], input_shape: tuple[int, ...]):
        self.layers = layers
        self.input_shape = tuple(int(d) for d in input_shape)  # per sample, (H, W, C)
        shape = self.input_shape
        for layer in layers:
            shape = layer.out_shape(shape)
        if len(shape) != 1:
            raise ValueError(f"the last layer's output is {shape}, not a vector of logits")
        self.classes = int(shape[0])

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}.{k}": v for layer in self.layers for k, v in layer.params.items()}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}.{k}": v for layer in self.layers for k, v in layer.grads.items()}

    def set_params(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace every parameter; the names, shapes and dtypes must match."""
        for layer in self.layers:
            for k, old in layer.params.items():
                new = arrays.get(f"{layer.name}.{k}")
                if new is None or new.shape != old.shape:
                    raise ValueError(f"{layer.name}.{k}: expected shape {old.shape}, got "
                                     f"{None if new is None else new.shape}")
                layer.params[k] = np.ascontiguousarray(new, dtype=old.dtype)

    def count_params(self) -> int:
        return int(sum(v.size for v in self.params.values()))

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def backward(self, dlogits: np.ndarray) -> None:
        """Fills every layer's grads; the input's own gradient is not computed."""
        d = dlogits
        for i in range(len(self.layers) - 1, -1, -1):
            d = self.layers[i].backward(d, need_dx=i > 0)

    def config(self) -> dict:
        return {"format": FILE_FORMAT, "version": FILE_VERSION,
                "input": {"name": "image", "shape": [-1, *self.input_shape], "layout": "NHWC",
                          "dtype": "float32"},
                "output": {"name": "logits", "shape": [-1, self.classes], "layout": "NC", "dtype": "float32"},
                "layers": [layer.config() for layer in self.layers]}

    def save(self, path) -> None:
        """Writes the .npz to `path` (a file object or a path; the caller makes it atomic)."""
        meta = np.frombuffer(json.dumps(self.config(), sort_keys=True).encode(), np.uint8)
        np.savez(path, **{META_KEY: meta}, **{k: np.asarray(v, np.float32) for k, v in self.params.items()})


def _layer_from_config(cfg: dict, arrays, dtype) -> Layer:
    kind = cfg.get("type")
    if not isinstance(kind, str) or kind not in LAYERS:
        raise ModelFileError(f"unknown layer type {str(kind)[:40]!r}")
    if kind in PARAMETRIC:
        name = cfg.get("name")
        if not (isinstance(name, str) and name):
            raise ModelFileError(f"a {kind} layer has no name")
        params = []
        for k in ("kernel", "bias"):
            a = arrays.get(f"{name}.{k}")
            if a is None:
                raise ModelFileError(f"the array {name}.{k} is missing")
            if a.dtype != np.float32 or a.ndim != (1 if k == "bias" else 4 if kind == "conv2d" else 2):
                raise ModelFileError(f"{name}.{k} is {a.dtype} with {a.ndim} dimensions")
            if 0 in a.shape:
                raise ModelFileError(f"{name}.{k} has a dimension of 0")
            params.append(np.ascontiguousarray(a, dtype=dtype))
        kernel, bias = params
        if bias.shape != kernel.shape[-1:]:
            raise ModelFileError(f"{name}: bias {bias.shape} does not fit kernel {kernel.shape}")
        try:
            return LAYERS[kind](name, kernel, bias)
        except ValueError as e:
            raise ModelFileError(str(e)) from None
    if kind == "maxpool":
        size = cfg.get("size")
        if not (type(size) is int and 1 <= size <= 64):
            raise ModelFileError("a maxpool layer has no whole-number size")
        return MaxPool(size)
    return LAYERS[kind]()


def from_arrays(arrays: dict[str, np.ndarray], dtype=np.float32) -> Sequential:
    bad = [k for k, a in arrays.items() if not isinstance(a, np.ndarray)]
    if bad:  # NpzFile hands back a member without an .npy header as bytes
        raise ModelFileError(f"its member {bad[0][:40]!r} is not a NumPy array")
    raw = arrays.get(META_KEY)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_META:
        raise ModelFileError(f"it has no {META_KEY} description")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelFileError(f"its {META_KEY} description is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FILE_FORMAT:
        raise ModelFileError(f"it is not an {FILE_FORMAT} file")
    if not (type(meta.get("version")) is int and meta["version"] == FILE_VERSION):
        raise ModelFileError(f"it is version {str(meta.get('version'))[:20]}; this runtime reads {FILE_VERSION}")
    shape = (meta.get("input") or {}).get("shape") if isinstance(meta.get("input"), dict) else None
    if not (isinstance(shape, list) and len(shape) == 4 and shape[0] == -1 and type(shape[0]) is int
            and all(type(d) is int and 0 < d <= MAX_SIDE for d in shape[1:])):
        raise ModelFileError(f"its input shape is not [-1, height, width, channels] (sides up to {MAX_SIDE})")
    layers = meta.get("layers")
    if not (isinstance(layers, list) and 0 < len(layers) <= MAX_LAYERS and all(isinstance(c, dict) for c in layers)):
        raise ModelFileError("its layer list is missing or malformed")
    if sum(a.size for k, a in arrays.items() if k != META_KEY) > MAX_PARAMS:
        raise ModelFileError("it holds more parameters than a small edge model")
    built = [_layer_from_config(c, arrays, dtype) for c in layers]
    try:
        return Sequential(built, tuple(shape[1:]))
    except ValueError as e:
        raise ModelFileError(f"its layers do not fit together: {e}") from None


def load(path, dtype=np.float32) -> Sequential:
    """A network from its .npz; ModelFileError with a short reason if it is not one."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ModelFileError("it is not an .npz archive")
        with loaded as npz:
            # the sizes the archive declares bound what reading it can cost (zipfile
            # stops a member at its declared size): check them before reading anything
            if sum(info.file_size for info in npz.zip.infolist()) > MAX_BYTES:
                raise ModelFileError(f"it declares more than {MAX_BYTES >> 20} MB of arrays")
            arrays = {k: npz[k] for k in npz.files}
    except ModelFileError:
        raise
    except Exception as e:  # zipfile, zlib and numpy raise many types for a damaged archive
        raise ModelFileError(f"it is not a readable .npz ({type(e).__name__}: {' '.join(str(e).split())[:120]})") \
            from None
    return from_arrays(arrays, dtype)
