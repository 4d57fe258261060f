"""Training the NumPy network (edgecnn.runtime.npnet): the from-scratch framework.

The layers' backward passes are hand-written in npnet; this module holds the optimizers
(SGD with optional momentum, and Adam, both written to match torch.optim's update rules
step for step; tests/test_npnet.py checks that) and the loop: shuffled mini-batches,
softmax cross-entropy, a cosine learning-rate decay to zero, as in the other trainers.
Written by hand because it is the point: no framework does the arithmetic here.
"""
from __future__ import annotations

import math
import time

import numpy as np

from edgecnn.converters import bridge
from edgecnn.runtime import npnet

from . import models
from .augment import random_shift

SUMMARY_LINES = 20  # at most this many epoch lines on stderr: XOR trains for thousands of epochs


class SGD:
    def __init__(self, params: dict[str, np.ndarray], momentum: float = 0.0):
        self.params, self.momentum, self.buffers = params, momentum, {}

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        for k, p in self.params.items():
            g = grads[k]
            if self.momentum:
                buf = self.buffers.get(k)
                if buf is None:
                    buf = self.buffers[k] = g.copy()
                else:
                    buf *= self.momentum
                    buf += g
                g = buf
            p -= lr * g


class Adam:
    def __init__(self, params: dict[str, np.ndarray], betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.betas, self.eps, self.t = params, betas, eps, 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        b1, b2 = self.betas
        self.t += 1
        step_size = lr / (1 - b1 ** self.t)
        root_bc2 = math.sqrt(1 - b2 ** self.t)
        for k, p in self.params.items():
            g, m, v = grads[k], self.m[k], self.v[k]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= step_size * m / (np.sqrt(v) / root_bc2 + self.eps)


OPTIMIZERS = {"adam": Adam, "sgd": SGD}


class Trained:
    weights_file = "model.npz"

    def __init__(self, net, spec):
        self.net, self.spec = net, spec
        self.params = net.count_params()

    def predict(self, x_uint8: np.ndarray) -> np.ndarray:
        return bridge.numpy_logits(self.net, scaled(x_uint8, self.spec))

    def save(self, folder) -> str:
        self.net.save(folder / self.weights_file)
        return self.weights_file


def scaled(x_uint8: np.ndarray, spec) -> np.ndarray:
    x = x_uint8.astype(np.float32)
    x /= np.float32(spec.scaling["divide_by"])
    return x


def limit_threads(threads: int) -> None:
    """Cap the BLAS threads under NumPy's matrix products for training, with threadpoolctl
    (installed with scikit-learn)."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=threads, user_api="blas")


def cosine(peak: float, step: int, total: int) -> float:
    """The learning rate at `step` of `total`, decaying from `peak` to zero on a cosine
    (PyTorch's CosineAnnealingLR, which the other trainers use)."""
    return peak * 0.5 * (1 + math.cos(math.pi * step / total))


def fit(ds, spec, cfg, progress_factory) -> tuple[Trained, list[dict]]:
    limit_threads(cfg.threads)
    net = models.build_numpy(spec, cfg.seed)
    opt = OPTIMIZERS[cfg.optimizer](net.trainable)
    rng = np.random.default_rng(cfg.seed)
    n, bs = len(ds.x_train), cfg.batch_size
    steps = (n + bs - 1) // bs
    total, done = steps * cfg.epochs, 0
    every = max(1, cfg.epochs // SUMMARY_LINES)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        shown = epoch % every == 0 or epoch == cfg.epochs
        bar = progress_factory(epoch, cfg.epochs, steps) if shown else None
        t0 = time.perf_counter()
        x_all = random_shift(ds.x_train, cfg.shift, rng)
        perm = rng.permutation(n)
        loss_sum, correct = 0.0, 0
        lr_start = cosine(cfg.lr, done, total)
        for step, start in enumerate(range(0, n, bs), 1):
            idx = perm[start:start + bs]
            labels = ds.y_train[idx]
            logits = net.forward(scaled(x_all[idx], spec), train=True)
            loss, dlogits = npnet.softmax_cross_entropy(logits, labels)
            net.backward(dlogits)
            opt.step(net.grads, cosine(cfg.lr, done, total))
            done += 1
            loss_sum += loss * len(idx)
            correct += int((logits.argmax(1) == labels).sum())
            if bar is not None and bar.enabled and step % 20 == 0:
                seen = min(start + bs, n)
                bar.update(20, loss_sum / seen, correct / seen)
        loss_mean, acc = loss_sum / n, correct / n
        seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close(loss_mean, acc)
        history.append({"epoch": epoch, "loss": loss_mean, "accuracy": acc,
                        "seconds": round(seconds, 3), "lr_start": lr_start})
    return Trained(net, spec), history
