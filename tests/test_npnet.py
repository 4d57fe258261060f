"""The NumPy layers' hand-written backward passes against PyTorch autograd, in float64:
for every layer, the gradient of a random scalar function of its output with respect to
its input and to each parameter; and one step of each optimizer against torch.optim."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgecnn.runtime import npnet
from edgecnn.toolchain import models, train_numpy

RTOL = 1e-6


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / scale)


def t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def nchw(x):
    return x.permute(0, 3, 1, 2)


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def check(layer, x, torch_fn, params=()):
    """Runs the layer forward and backward in NumPy and `torch_fn(x, *params)` with
    autograd, on the same upstream gradient; every gradient must agree."""
    rng = np.random.default_rng(1)
    y = layer.forward(x, train=True)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    tx, tp = t(x), [t(layer.params[k]) for k in params]
    ty = torch_fn(tx, *tp)
    assert rel_err(y, ty.detach().numpy()) <= RTOL, "forward"
    ty.backward(torch.from_numpy(dy))
    errors = {"input": rel_err(dx, tx.grad.numpy())}
    errors.update({k: rel_err(layer.grads[k], p.grad.numpy()) for k, p in zip(params, tp)})
    assert all(e <= RTOL for e in errors.values()), errors
    return errors


rng = np.random.default_rng(0)


def test_dense():
    layer = npnet.Dense("fc", rng.standard_normal((12, 5)), rng.standard_normal(5))
    check(layer, rng.standard_normal((7, 12)), lambda x, k, b: x @ k + b, ("kernel", "bias"))


@pytest.mark.parametrize("size", [1, 3, 5])
def test_conv2d(size):
    layer = npnet.Conv2D("conv", rng.standard_normal((size, size, 3, 4)), rng.standard_normal(4))
    check(layer, rng.standard_normal((2, 7, 6, 3)),
          lambda x, k, b: nhwc(F.conv2d(nchw(x), k.permute(3, 2, 0, 1), b, padding=size // 2)),
          ("kernel", "bias"))


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 2)])  # even, and ragged edges dropped
def test_maxpool(shape):
    x = rng.standard_normal(shape)
    check(npnet.MaxPool(2), x, lambda x: nhwc(F.max_pool2d(nchw(x), 2)))
    assert np.array_equal(npnet.MaxPool(2).forward(x), npnet.MaxPool(2).forward(x, train=True))  # two code paths


def test_relu():
    check(npnet.ReLU(), rng.standard_normal((4, 9)), torch.relu)


def test_sigmoid():
    x = rng.standard_normal((4, 9)) * 3
    x[0, :3] = [-800.0, 800.0, 0.0]  # the stable form must not overflow at the extremes
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        check(npnet.Sigmoid(), x, torch.sigmoid)


def test_flatten_in_nhwc_order():
    check(npnet.Flatten(), rng.standard_normal((3, 4, 5, 2)), lambda x: x.reshape(3, -1))


def test_binary_logits():
    check(npnet.BinaryLogits(), rng.standard_normal((5, 1)),
          lambda x: torch.cat([torch.zeros_like(x), x], 1))


def test_softmax_cross_entropy():
    logits, labels = rng.standard_normal((6, 4)) * 4, np.array([0, 3, 1, 1, 2, 3])
    loss, grad = npnet.softmax_cross_entropy(logits, labels)
    tl = t(logits)
    expected = F.cross_entropy(tl, torch.from_numpy(labels))
    expected.backward()
    assert rel_err(loss, expected.item()) <= RTOL
    assert rel_err(grad, tl.grad.numpy()) <= RTOL


def test_whole_cnn_against_the_torch_twin():
    """The NumPy cnn's parameter gradients equal those of models.build_torch with the same
    weights (through the bridge's layout change), end to end in float64."""
    from edgecnn.converters import bridge
    spec = models.ModelSpec("cnn", (8, 8, 1), [str(i) for i in range(10)])
    net = models.build_numpy(spec, seed=3, dtype=np.float64)
    twin = models.build_torch(spec).double()
    flat = models.flatten_shape(spec)
    bridge.load_into("torch", twin, bridge.arrays_of("numpy", net, flat), flat)
    x, y = rng.random((5, 8, 8, 1)), np.array([1, 2, 3, 4, 5])
    loss, d = npnet.softmax_cross_entropy(net.forward(x, train=True), y)
    net.backward(d)
    tloss = F.cross_entropy(twin(torch.from_numpy(x).permute(0, 3, 1, 2)), torch.from_numpy(y))
    tloss.backward()
    grads = bridge.arrays_of("torch", twin, flat, grads=True)
    assert rel_err(loss, tloss.item()) <= RTOL
    errors = {k: rel_err(g, grads[k]) for k, g in net.grads.items()}
    assert set(errors) == set(grads) and all(e <= RTOL for e in errors.values()), errors


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizer_steps_match_torch(name):
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    tparams = [t(v) for v in params.values()]
    opt = train_numpy.OPTIMIZERS[name](params, **({"momentum": 0.9} if name == "sgd" else {}))
    topt = {"sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
            "adam": lambda p: torch.optim.Adam(p, lr=0.05)}[name](tparams)
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        opt.step(grads, lr=0.05)
        for p, g in zip(tparams, grads.values()):
            p.grad = torch.from_numpy(g)
        topt.step()
    for (k, v), p in zip(params.items(), tparams):
        assert rel_err(v, p.detach().numpy()) <= RTOL, k
