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


@pytest.mark.parametrize("name,momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", None)])
def test_optimizer_steps_match_torch(name, momentum):
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    tparams = [t(v) for v in params.values()]
    if name == "sgd":  # momentum 0 is what --optimizer sgd runs: plain gradient descent
        opt, topt = train_numpy.SGD(params, momentum), torch.optim.SGD(tparams, lr=0.05, momentum=momentum)
    else:
        opt, topt = train_numpy.Adam(params), torch.optim.Adam(tparams, lr=0.05)
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        opt.step(grads, lr=0.05)
        for p, g in zip(tparams, grads.values()):
            p.grad = torch.from_numpy(g)
        topt.step()
    for (k, v), p in zip(params.items(), tparams):
        assert rel_err(v, p.detach().numpy()) <= RTOL, k


def test_hostile_network_files_are_refused_with_a_reason(tmp_path):
    """What a crafted .npz could do to a loader that trusts it: each is a ModelFileError
    with a short reason, before anything large is allocated."""
    import io
    import json
    import zipfile
    spec = models.ModelSpec("cnn", (8, 8, 1), [str(i) for i in range(10)])
    good = tmp_path / "good.npz"
    models.build_numpy(spec).save(good)
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__model__"].tobytes())

    def variant(name, change_meta=None, **replace):
        a = dict(arrays, **replace)
        if change_meta:
            m = json.loads(json.dumps(meta))
            change_meta(m)
            a["__model__"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
        path = tmp_path / f"{name}.npz"
        np.savez(path, **a)
        return path

    raw_member = tmp_path / "raw.npz"
    buf = io.BytesIO(good.read_bytes())
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("junk", b"not an array")
    raw_member.write_bytes(buf.getvalue())
    cases = {
        raw_member: "is not a NumPy array",
        variant("deep", __model__=np.frombuffer(b"[" * 100_000, np.uint8)): "is not JSON",
        variant("version", lambda m: m.update(version=True)): "version",
        variant("batch", lambda m: m["input"].update(shape=[1, 8, 8, 1])): "input shape",
        variant("side", lambda m: m["input"].update(shape=[-1, 10 ** 9, 8, 1])): "input shape",
        variant("empty", **{"conv1.kernel": np.zeros((3, 3, 1, 0), np.float32)}): "dimension of 0",
        variant("kernel", **{"conv1.kernel": np.zeros((101, 101, 1, 32), np.float32)}): "at most 15",
        variant("dtype", **{"fc2.bias": np.zeros(10, np.float64)}): "float64",
        variant("unknown", lambda m: m["layers"].insert(0, {"type": ["relu"]})): "unknown layer type",
        variant("mismatch", **{"fc1.kernel": np.zeros((7, 128), np.float32)}): "do not fit together",
    }
    for path, reason in cases.items():
        with pytest.raises(npnet.ModelFileError, match=reason):
            npnet.load(path)
    assert npnet.load(good).classes == 10
