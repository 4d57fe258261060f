"""The NumPy network: one layer per op of the graph vocabulary (runtime/graph.py), each
written by hand in NumPy with a forward and a backward pass; a network that runs a
graph of them; and the `.npz` file that holds one.

Written by hand on purpose: this is edgecnn's from-scratch framework (`edgecnn train
--framework numpy`) and its dependency-free runtime (runtime/numpyrt.py), so nothing
but NumPy may run here. Training uses `forward(train=True)` and `backward`; inference
uses `forward` alone. Layouts are NHWC, conv kernels (kh, kw, in, out) and dense
kernels (in, out), which are Keras's layouts; the weight bridge maps them to PyTorch's.
Every op works in the dtype of its input and parameters (float32 to train and run,
float64 for the gradient check in tests/test_npnet.py).

The file is an uncompressed `.npz` read with allow_pickle=False: one array per
parameter ("conv1.kernel", ...) and "__model__", the JSON description of the graph and
the input (uint8 bytes). `load` checks the graph with runtime/graph.py, then every
array's presence, dtype and shape against the shapes the graph derives, before
anything runs.
"""
from __future__ import annotations

import json
import math

import numpy as np

from . import graph

FILE_FORMAT, FILE_VERSION = "edgecnn-numpy", 2
READS = (1, 2)  # version 1: a plain stack of layers (edgecnn before models as data)
META_KEY = "__model__"
# Limits that keep a hostile file from costing unbounded memory or time; far above any
# edge model (the MNIST cnn has 0.4 M parameters in a 1.6 MB file).
MAX_PARAMS, MAX_BYTES = 200_000_000, 1 << 30
MAX_SIDE, MAX_META = 4096, 1 << 20


class ModelFileError(Exception):
    """The file is not a readable NumPy network."""


class Layer:
    """One node of the graph at run time: built from the node (its op's attributes,
    runtime/graph.py) and its parameters, which it shares with the network (training
    updates them in place)."""
    kind = ""

    def __init__(self, node: dict, params: dict[str, np.ndarray]):
        self.node, self.name, self.params = node, node["name"], params
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True):
        """Gradients of the trainable parameters (into self.grads) and of the input, from
        the gradient of the output; uses what the last forward(train=True) kept."""
        raise NotImplementedError


class Dense(Layer):
    kind = "dense"

    def forward(self, x, train=False):
        if train:
            self.x = x
        y = x @ self.params["kernel"]
        if "bias" in self.params:
            y += self.params["bias"]
        return y

    def backward(self, dy, need_dx=True):
        self.grads = {"kernel": self.x.T @ dy}
        if "bias" in self.params:
            self.grads["bias"] = dy.sum(0)
        return dy @ self.params["kernel"].T if need_dx else None


def _taps(k: int, stride: int, oh: int, ow: int):
    """(i, j, rows, cols): for each kernel tap, the slices of the padded input it reads."""
    return [(i, j, slice(i, i + stride * (oh - 1) + 1, stride), slice(j, j + stride * (ow - 1) + 1, stride))
            for i in range(k) for j in range(k)]


class Conv2D(Layer):
    """Any stride, symmetric zero padding, square kernels; a full convolution is im2col
    and one matrix product, a depthwise one (groups = channels) a sum over the taps."""
    kind = "conv2d"

    def __init__(self, node, params):
        super().__init__(node, params)
        self.k, self.stride, self.pad = node["kernel"], node["stride"], graph.padding_of(node)
        self.depthwise = node["groups"] > 1

    def _padded(self, x):
        p = self.pad
        if not p:
            return x
        n, h, w, c = x.shape
        padded = np.zeros((n, h + 2 * p, w + 2 * p, c), x.dtype)
        padded[:, p:p + h, p:p + w] = x
        return padded

    def _out_hw(self, h, w):
        return (graph.window_out(h, self.k, self.stride, self.pad), graph.window_out(w, self.k, self.stride, self.pad))

    def _cols(self, padded, oh, ow):
        n, _, _, c = padded.shape
        k = self.k
        if k == 1 and self.stride == 1:
            return padded.reshape(n * oh * ow, c)  # a pointwise conv reads its input as it is
        # one copy per kernel tap, each contiguous in channels: faster here than
        # reshaping a sliding_window_view, which copies with a 6-D stride pattern
        cols = np.empty((n, oh, ow, k, k, c), padded.dtype)
        for i, j, rows, cs in _taps(k, self.stride, oh, ow):
            cols[:, :, :, i, j] = padded[:, rows, cs]
        return cols.reshape(n * oh * ow, k * k * c)

    def forward(self, x, train=False):
        n, h, w, _ = x.shape
        oh, ow = self._out_hw(h, w)
        kernel = self.params["kernel"]
        padded = self._padded(x)
        if self.depthwise:
            y = np.zeros((n, oh, ow, kernel.shape[3]), x.dtype)
            for i, j, rows, cs in _taps(self.k, self.stride, oh, ow):
                y += padded[:, rows, cs] * kernel[i, j, 0]
            if train:
                self.padded = padded
        else:
            cols = self._cols(padded, oh, ow)
            if train:
                self.cols = cols
            y = (cols @ kernel.reshape(-1, kernel.shape[3])).reshape(n, oh, ow, kernel.shape[3])
        if train:
            self.in_shape = x.shape
        if "bias" in self.params:
            y += self.params["bias"]
        return y

    def _unpad(self, dpad):
        p = self.pad
        n, h, w, _ = self.in_shape
        return dpad[:, p:p + h, p:p + w] if p else dpad

    def backward(self, dy, need_dx=True):
        kernel = self.params["kernel"]
        k, _, c, cout = kernel.shape
        n, h, w, cin = self.in_shape
        oh, ow = dy.shape[1:3]
        p = self.pad
        self.grads = {}
        dpad = np.zeros((n, h + 2 * p, w + 2 * p, cin), dy.dtype) if need_dx else None
        if self.depthwise:
            dk = np.empty_like(kernel)
            for i, j, rows, cs in _taps(k, self.stride, oh, ow):
                dk[i, j, 0] = np.einsum("nhwc,nhwc->c", self.padded[:, rows, cs], dy)
                if need_dx:
                    dpad[:, rows, cs] += dy * kernel[i, j, 0]
            self.grads["kernel"] = dk
        else:
            dy2 = dy.reshape(-1, cout)
            self.grads["kernel"] = (self.cols.T @ dy2).reshape(kernel.shape)
            if need_dx:
                dcols = dy2 @ kernel.reshape(-1, cout).T
                if k == 1 and self.stride == 1:
                    dpad = dcols.reshape(n, h + 2 * p, w + 2 * p, cin)
                else:
                    dcols = dcols.reshape(n, oh, ow, k, k, c)
                    for i, j, rows, cs in _taps(k, self.stride, oh, ow):  # col2im: each tap's
                        dpad[:, rows, cs] += dcols[:, :, :, i, j]         # gradient goes back where it came from
        if "bias" in self.params:
            self.grads["bias"] = dy.sum((0, 1, 2))
        return self._unpad(dpad) if need_dx else None


class BatchNorm(Layer):
    """Training normalises with the batch's statistics and updates the moving ones as
    PyTorch does (unbiased variance, `momentum` the new batch's weight); inference uses
    the moving statistics."""
    kind = "batchnorm"

    def forward(self, x, train=False):
        p, eps = self.params, self.node["eps"]
        if not train:
            scale = p["gamma"] / np.sqrt(p["moving_variance"] + eps)
            return x * scale + (p["beta"] - p["moving_mean"] * scale)
        axes = tuple(range(x.ndim - 1))
        count = x.size // x.shape[-1]
        mean = x.mean(axes)
        var = x.var(axes)
        m = self.node["momentum"]
        p["moving_mean"] *= 1 - m
        p["moving_mean"] += m * mean
        p["moving_variance"] *= 1 - m
        p["moving_variance"] += m * var * (count / max(count - 1, 1))
        self.inv_std = 1 / np.sqrt(var + eps)
        self.xhat = (x - mean) * self.inv_std
        return self.xhat * p["gamma"] + p["beta"]

    def backward(self, dy, need_dx=True):
        axes = tuple(range(dy.ndim - 1))
        dbeta = dy.sum(axes)
        dgamma = (dy * self.xhat).sum(axes)
        self.grads = {"gamma": dgamma, "beta": dbeta}
        if not need_dx:
            return None
        count = dy.size // dy.shape[-1]
        return (self.params["gamma"] * self.inv_std / count) * (count * dy - dbeta - self.xhat * dgamma)


class _Pool(Layer):
    """size x size windows at a stride (the size by default); a ragged last row or
    column is dropped (floor), as in PyTorch and Keras's "valid" pooling."""

    def __init__(self, node, params):
        super().__init__(node, params)
        self.k, self.stride = node["size"], graph.stride_of(node)

    def _shape(self, x):
        n, h, w, c = x.shape
        return graph.window_out(h, self.k, self.stride), graph.window_out(w, self.k, self.stride)


class MaxPool(_Pool):
    kind = "maxpool"

    def forward(self, x, train=False):
        oh, ow = self._shape(x)
        taps = _taps(self.k, self.stride, oh, ow)
        # one np.maximum per window position, each over a strided view that is
        # contiguous in channels: 2-3x faster here than reducing a 6-D reshape
        y = x[:, taps[0][2], taps[0][3]].copy()
        if train:
            self.argmax = np.zeros(y.shape, np.int8 if len(taps) < 128 else np.int16)
            self.in_shape = x.shape
        for t, (_, _, rows, cols) in enumerate(taps[1:], 1):
            v = x[:, rows, cols]
            if train:
                self.argmax[v > y] = t  # strictly greater: the first maximum wins, as in PyTorch
            np.maximum(y, v, out=y)
        return y

    def backward(self, dy, need_dx=True):
        dx = np.zeros(self.in_shape, dy.dtype)
        oh, ow = dy.shape[1:3]
        for t, (_, _, rows, cols) in enumerate(_taps(self.k, self.stride, oh, ow)):
            dx[:, rows, cols] += np.where(self.argmax == t, dy, 0)
        return dx


class AvgPool(_Pool):
    kind = "avgpool"

    def forward(self, x, train=False):
        oh, ow = self._shape(x)
        if train:
            self.in_shape = x.shape
        taps = _taps(self.k, self.stride, oh, ow)
        y = x[:, taps[0][2], taps[0][3]].copy()
        for _, _, rows, cols in taps[1:]:
            y += x[:, rows, cols]
        y *= x.dtype.type(1 / len(taps))
        return y

    def backward(self, dy, need_dx=True):
        dx = np.zeros(self.in_shape, dy.dtype)
        oh, ow = dy.shape[1:3]
        taps = _taps(self.k, self.stride, oh, ow)
        share = dy * dy.dtype.type(1 / len(taps))
        for _, _, rows, cols in taps:
            dx[:, rows, cols] += share
        return dx


class GlobalAvgPool(Layer):
    kind = "gap"

    def forward(self, x, train=False):
        if train:
            self.in_shape = x.shape
        return x.mean((1, 2))

    def backward(self, dy, need_dx=True):
        n, h, w, c = self.in_shape
        return np.broadcast_to((dy / (h * w))[:, None, None, :], self.in_shape).copy()


class Pad(Layer):
    kind = "pad"

    def forward(self, x, train=False):
        a = self.node
        return np.pad(x, ((0, 0), (a["top"], a["bottom"]), (a["left"], a["right"]), (0, 0)))

    def backward(self, dy, need_dx=True):
        a = self.node
        return dy[:, a["top"]:dy.shape[1] - a["bottom"], a["left"]:dy.shape[2] - a["right"]]


class Add(Layer):
    kind = "add"

    def forward(self, a, b, train=False):
        return a + b

    def backward(self, dy, need_dx=True):
        return dy, dy


class Dropout(Layer):
    """Inverted dropout: training zeroes each value with probability `rate` and scales
    the rest by 1 / (1 - rate); inference is the identity."""
    kind = "dropout"
    rng = np.random.default_rng(0)  # Net.__init__ gives each network its own, from its seed

    def forward(self, x, train=False):
        rate = self.node["rate"]
        if not train or rate == 0:
            self.mask = None
            return x
        keep = 1 - rate
        self.mask = (self.rng.random(x.shape) < keep).astype(x.dtype) / x.dtype.type(keep)
        return x * self.mask

    def backward(self, dy, need_dx=True):
        return dy if self.mask is None else dy * self.mask


class ReLU(Layer):
    kind = "relu"

    def forward(self, x, train=False):
        if train:
            self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, dy, need_dx=True):
        return dy * self.mask


class ReLU6(Layer):
    kind = "relu6"

    def forward(self, x, train=False):
        if train:
            self.mask = (x > 0) & (x < 6)
        return np.clip(x, 0, 6)

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

    def forward(self, x, train=False):
        return np.concatenate([np.zeros_like(x), x], axis=1)

    def backward(self, dy, need_dx=True):
        return dy[:, 1:2]


LAYERS = {cls.kind: cls for cls in (Dense, Conv2D, Pad, BatchNorm, MaxPool, AvgPool, GlobalAvgPool, Add, Dropout,
                                    ReLU, ReLU6, Sigmoid, Flatten, BinaryLogits)}
assert set(LAYERS) == set(graph.OPS), "every op of the vocabulary runs here"


def layer(node: dict, params: dict[str, np.ndarray] | None = None) -> Layer:
    """One op as a stand-alone layer (the gradient checks use it)."""
    return LAYERS[node["op"]](node, params or {})


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


class Net:
    """A network over a graph (runtime/graph.py): one layer per node, run in graph order.
    `params` holds every array the file holds ("layer.param", canonical layouts);
    `trainable` the ones gradients update, and `grads` their gradients after backward."""

    def __init__(self, g: graph.Graph, params: dict[str, np.ndarray], seed: int = 0):
        self.graph = g
        self.input_shape = tuple(int(d) for d in g.input_shape)  # per sample, (H, W, C)
        if len(g.output_shape) != 1:
            raise ValueError(f"the last layer's output is {g.output_shape}, not a vector of logits")
        self.classes = int(g.output_shape[0])
        rng = np.random.default_rng(seed)
        self.layers = []
        for node in g.nodes:
            own = {k: params[f"{node['name']}.{k}"] for k in g.params_of(node)}
            lay = LAYERS[node["op"]](node, own)
            if isinstance(lay, Dropout):
                lay.rng = rng
            self.layers.append(lay)
        last_read = {s: i for i, n in enumerate(g.nodes) for s in n["inputs"]}
        self._done = [[s for s in dict.fromkeys(n["inputs"]) if last_read[s] == i] for i, n in enumerate(g.nodes)]
        self._trainable = {(lay.name, k) for lay, n in zip(self.layers, g.nodes)
                           for k in graph.OPS[n["op"]].trainable(n)}

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {f"{lay.name}.{k}": v for lay in self.layers for k, v in lay.params.items()}

    @property
    def trainable(self) -> dict[str, np.ndarray]:
        return {f"{lay.name}.{k}": v for lay in self.layers for k, v in lay.params.items()
                if (lay.name, k) in self._trainable}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return {f"{lay.name}.{k}": v for lay in self.layers for k, v in lay.grads.items()}

    def set_params(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace every parameter; the names, shapes and dtypes must match."""
        for lay in self.layers:
            for k, old in lay.params.items():
                new = arrays.get(f"{lay.name}.{k}")
                if new is None or new.shape != old.shape:
                    raise ValueError(f"{lay.name}.{k}: expected shape {old.shape}, got "
                                     f"{None if new is None else new.shape}")
                lay.params[k] = np.ascontiguousarray(new, dtype=old.dtype)

    def count_params(self) -> int:
        return int(sum(v.size for v in self.params.values()))

    def forward(self, x: np.ndarray, train: bool = False, keep: bool = False):
        """The logits; with `keep`, every layer's output by name (inference only)."""
        values = {graph.INPUT: x}
        for lay, node, done in zip(self.layers, self.graph.nodes, self._done):
            values[node["name"]] = lay.forward(*(values[s] for s in node["inputs"]), train=train)
            for s in ([] if keep else done):  # free what no later layer reads
                del values[s]
        return values if keep else values[self.graph.output]

    def backward(self, dlogits: np.ndarray) -> None:
        """Fills every layer's grads; the input's own gradient is not computed."""
        pending = {self.graph.output: dlogits}
        for lay, node in zip(reversed(self.layers), reversed(self.graph.nodes)):
            d = pending.pop(node["name"])
            need = [s != graph.INPUT for s in node["inputs"]]
            dins = lay.backward(d, need_dx=any(need))
            if len(node["inputs"]) == 1:
                dins = (dins,)
            for s, ds, needed in zip(node["inputs"], dins, need):
                if needed:
                    pending[s] = pending[s] + ds if s in pending else ds

    def config(self) -> dict:
        return {"format": FILE_FORMAT, "version": FILE_VERSION,
                "input": {"name": "image", "shape": [-1, *self.input_shape], "layout": "NHWC",
                          "dtype": "float32"},
                "output": {"name": "logits", "shape": [-1, self.classes], "layout": "NC", "dtype": "float32"},
                "graph": self.graph.to_json()}

    def save(self, path) -> None:
        """Writes the .npz to `path` (a file object or a path; the caller makes it atomic)."""
        meta = np.frombuffer(json.dumps(self.config(), sort_keys=True).encode(), np.uint8)
        np.savez(path, **{META_KEY: meta}, **{k: np.asarray(v, np.float32) for k, v in self.params.items()})


def _v1_nodes(layers: list) -> list:
    """A version-1 file's layer list (a plain stack, unnamed activations) as graph nodes."""
    nodes = []
    for i, cfg in enumerate(layers):
        if not isinstance(cfg, dict):
            raise ModelFileError("its layer list is missing or malformed")
        node = {k: v for k, v in cfg.items() if k not in ("type", "size", "padding", "filters")}
        node["op"] = cfg.get("type")
        node.setdefault("name", f"{cfg.get('type')}{i + 1}")
        if cfg.get("type") == "conv2d":
            node.update(filters=cfg.get("filters"), kernel=cfg.get("size"), padding="same")
        elif "size" in cfg:
            node["size"] = cfg["size"]
        nodes.append(node)
    return nodes


def from_arrays(arrays: dict[str, np.ndarray], dtype=np.float32) -> Net:
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
    if not (type(meta.get("version")) is int and meta["version"] in READS):
        raise ModelFileError(f"it is version {str(meta.get('version'))[:20]}; this runtime reads "
                             f"{' and '.join(map(str, READS))}")
    shape = (meta.get("input") or {}).get("shape") if isinstance(meta.get("input"), dict) else None
    if not (isinstance(shape, list) and len(shape) == 4 and shape[0] == -1 and type(shape[0]) is int
            and all(type(d) is int and 0 < d <= MAX_SIDE for d in shape[1:])):
        raise ModelFileError(f"its input shape is not [-1, height, width, channels] (sides up to {MAX_SIDE})")
    nodes = meta.get("graph") if meta["version"] == FILE_VERSION else meta.get("layers")
    if not (isinstance(nodes, list) and 0 < len(nodes) <= graph.MAX_NODES):
        raise ModelFileError("its layer list is missing or malformed")
    if meta["version"] == 1:
        nodes = _v1_nodes(nodes)
    if sum(a.size for k, a in arrays.items() if k != META_KEY) > MAX_PARAMS:
        raise ModelFileError("it holds more parameters than a small edge model")
    try:
        g = graph.Graph(nodes, tuple(shape[1:]))
    except graph.GraphError as e:
        raise ModelFileError(f"its layers do not fit together: {e}") from None
    wanted = g.param_shapes()
    extra = sorted(set(arrays) - set(wanted) - {META_KEY})
    if extra:
        raise ModelFileError(f"it holds an array {extra[0][:40]!r} that no layer uses")
    params = {}
    for key, want in wanted.items():  # every array the graph needs, as the graph says
        a = arrays.get(key)
        if a is None:
            raise ModelFileError(f"the array {key} is missing")
        if a.dtype != np.float32:
            raise ModelFileError(f"{key} is {a.dtype}, not float32")
        if a.shape != want:
            raise ModelFileError(f"{key} is {a.shape}; its layer needs {want}")
        params[key] = np.ascontiguousarray(a, dtype=dtype)
    try:
        return Net(g, params)
    except ValueError as e:
        raise ModelFileError(f"its layers do not fit together: {e}") from None


def load(path, dtype=np.float32) -> Net:
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
