"""int8 weights rounded to keep each layer's output, not each weight, close to float.

A quantizer rounds every weight to its nearest step. Where a kernel's taps nearly
cancel (an edge detector's 3x3 stem on one input channel), those small independent
errors add up to a large error in the layer's output: on the zoo's PyTorch-trained
resnet the stem's rounded weights alone cost 1.35 % of top-1 agreement with fp32.
GPTQ (Frantar et al., 2022) rounds the inputs of a layer one at a time and moves each
error onto the weights not yet rounded, weighted by how the calibration images'
inputs to that layer correlate (H = X^T X), which keeps X @ W close to float.

Each int8 converter quantizes as it always does, choosing its scales, then replaces the
integers of each int8 layer with the ones `Rounder.integers` gives for those scales
(read from its own file), so the scales, zero points and biases stay the converter's.

Written here by hand: the GPTQ packages (auto-gptq, gptqmodel, llm-compressor, torchao's)
quantize the linear layers of language models to 4 bits on a GPU, with their own scale
choice and file formats; none rounds conv and dense weights onto another quantizer's
given int8 scales."""
from __future__ import annotations

import numpy as np

from edgecnn.runtime import graph as g
from edgecnn.runtime import npnet

from . import bridge

DAMPING = 0.01  # of H's mean diagonal, added to it: GPTQ's default, keeps H invertible
BATCH = 64  # calibration images per forward pass while H is summed
BLOCK = 128  # inputs rounded one by one before their errors reach the rest in one product


def gptq(w: np.ndarray, h: np.ndarray, scale: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """Integers q (rows, K) for weights `w` (rows, K: one row per output) on steps `scale`
    (rows,), within [qmin, qmax], keeping (q * scale - w) @ H @ (...)^T small row by row."""
    w = np.array(w, np.float64)
    h = np.array(h, np.float64)
    dead = np.diag(h) <= 0  # inputs the calibration images never reach: rounded to nearest
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += DAMPING * float(np.mean(np.diag(h)))
    # the upper Cholesky factor of H^-1: row j says how the error of input j spreads on
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    s = np.asarray(scale, np.float64)
    q = np.empty(w.shape, np.int64)
    k = w.shape[1]
    for b0 in range(0, k, BLOCK):  # within a block column by column, then the rest at once
        b1 = min(b0 + BLOCK, k)
        errs = np.empty((len(w), b1 - b0))
        for j in range(b0, b1):
            q[:, j] = np.clip(np.rint(w[:, j] / s), qmin, qmax)
            errs[:, j - b0] = (w[:, j] - q[:, j] * s) / u[j, j]
            w[:, j + 1:b1] -= np.outer(errs[:, j - b0], u[j, j + 1:b1])
        w[:, b1:] -= errs @ u[b0:b1, b1:]
    return q


class Rounder:
    """The float network and its calibration images; for each int8 layer, the integers
    that GPTQ gives for a converter's scales, in canonical kernel layout."""

    def __init__(self, graph: g.Graph, arrays: dict[str, np.ndarray], images: np.ndarray):
        self.graph, self.arrays, self.images = graph, arrays, images
        self._nodes = {n["name"]: n for n in graph.nodes}
        self._h: dict[str, list] = {}
        self._done: dict = {}

    def _gain(self, layer: str) -> np.ndarray:
        """How much folding the chain's batchnorm scales each output channel's weights."""
        gain = 1.0
        for name in self.graph.folded_chain(layer)[1:]:
            node = self._nodes[name]
            if node["op"] == "batchnorm":
                a = {k: self.arrays[f"{name}.{k}"] for k in ("gamma", "moving_variance")}
                gain = gain * a["gamma"] / np.sqrt(a["moving_variance"] + node["eps"])
        return np.asarray(gain, np.float64)

    def _hessians(self) -> None:
        """H = X^T X of every weighted layer's input over the calibration images: one for
        the whole kernel, or for a depthwise conv one per channel."""
        net = npnet.Net(self.graph, self.arrays)
        layers = {lay.name: lay for lay in net.layers}
        wanted = self.graph.weighted_layers()
        for i in range(0, len(self.images), BATCH):
            values = net.forward(self.images[i:i + BATCH].astype(np.float32), keep=True)
            for name in wanted:
                node = self._nodes[name]
                x = values[node["inputs"][0]].astype(np.float64)
                lay = layers[name]
                if node["op"] == "conv2d":
                    oh, ow = lay._out_hw(*x.shape[1:3])
                    cols = lay._cols(lay._padded(x), oh, ow)
                    if lay.depthwise:  # (rows, taps, channels) -> one H per channel
                        cols = cols.reshape(len(cols), lay.k * lay.k, -1)
                        part = list(np.einsum("rkc,rlc->ckl", cols, cols))
                    else:
                        part = [cols.T @ cols]
                else:
                    x = x.reshape(len(x), -1)
                    part = [x.T @ x]
                self._h[name] = part if name not in self._h else [a + b for a, b in zip(self._h[name], part)]

    def layers(self, floats) -> list[str]:
        """The layers an int8 artifact quantizes: every conv2d and dense layer but `floats`."""
        return [n for n in self.graph.weighted_layers() if n not in floats]

    def _steps(self, layer: str, scale) -> tuple[np.ndarray, np.ndarray]:
        """(step, live) per output channel: a converter's weight scales (of the kernel with
        any batchnorm folded in) as steps of the unfolded kernel, which gives the same
        integers; `live` is False where the folded weights are all zero (a zero gamma or
        scale), a channel whose step is meaningless (1 here) and whose integers stay zero."""
        out = self.arrays[f"{layer}.kernel"].shape[-1]
        folded = np.broadcast_to(np.asarray(scale, np.float64), (out,))
        gain = np.broadcast_to(self._gain(layer), (out,))
        live = (gain != 0) & (folded > 0) & np.isfinite(folded)
        return np.where(live, folded / np.where(gain != 0, gain, 1.0), 1.0), live

    def layer_of(self, ints: np.ndarray, scale, candidates) -> str:
        """Which of `candidates` a quantizer's int8 kernel (canonical layout, its scales)
        was made from: the one whose float kernel it matches to within a step (a rounding
        to nearest, or a clamp at the range's end), found by values, not names."""
        found = []
        for layer in candidates:
            kernel = self.arrays[f"{layer}.kernel"]
            if kernel.shape != ints.shape:
                continue
            step, live = self._steps(layer, scale)
            off = np.abs(ints * step - kernel) / np.abs(step)
            if np.all(off[..., live] <= 1.01) and not ints[..., ~live].any():
                found.append(layer)
        if len(found) != 1:
            raise ValueError(f"an int8 kernel of shape {ints.shape} matches the layers {found} of the model, not one")
        return found[0]

    def torch_integers(self, layer: str, scale, qmin: int, qmax: int) -> np.ndarray:
        """integers() in PyTorch's layout ((out, in / groups, kh, kw) or (out, in), a
        flattened map's rows in (C, H, W) order), which ONNX files keep too."""
        return np.ascontiguousarray(bridge.torch_layout(self.graph, self._nodes[layer], self.integers(layer, scale, qmin, qmax)))

    def integers(self, layer: str, scale, qmin: int, qmax: int) -> np.ndarray:
        """The layer's int8 kernel in canonical layout ((kh, kw, in / groups, out) or
        (in, out)) for the converter's weight scales in its own file (`scale`: one per
        output channel, or one for the layer; of the kernel with any batchnorm folded
        in) and its integer range."""
        kernel = self.arrays[f"{layer}.kernel"]
        out = kernel.shape[-1]
        key = (layer, np.broadcast_to(np.asarray(scale, np.float64), (out,)).tobytes(), qmin, qmax)
        if key not in self._done:
            if not self._h:
                self._hessians()
            step, live = self._steps(layer, scale)
            w = kernel.reshape(-1, out).T  # (out, K)
            hs = self._h[layer]
            if len(hs) == 1:
                q = gptq(w, hs[0], step, qmin, qmax)
            else:  # depthwise: each channel reads only its own input
                q = np.concatenate([gptq(w[c:c + 1], hs[c], step[c:c + 1], qmin, qmax) for c in range(out)])
            q[~live] = 0
            self._done[key] = q.T.reshape(kernel.shape).astype(np.int8)
        return self._done[key]
