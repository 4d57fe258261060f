"""The NumPy layers' hand-written backward passes against PyTorch autograd, in float64:
for every layer, the gradient of a random scalar function of its output with respect to
its input and to each parameter; and one step of each optimizer against torch.optim."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgecnn.runtime import graph, npnet
from edgecnn.toolchain import models, train_numpy

RTOL = 1e-6


def rel_err(a, b, floor: float = 1e-300) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b), floor)
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


def layer(op: str, in_shape, params=(), **attrs):
    """A stand-alone NumPy layer for one node of the vocabulary, with random float64
    parameters of the shapes the graph derives for `in_shape` (per image)."""
    node = graph.Graph([{"op": op, "name": "n", **attrs}], in_shape).nodes[0] if op != "add" else \
        {"op": "add", "name": "n", "inputs": ["a", "b"]}
    shapes = graph.OPS[op].param_shapes(node, [in_shape])
    arrays = {k: rng.standard_normal(s) + (2.0 if k == "moving_variance" else 0.0) for k, s in shapes.items()}
    if "moving_variance" in arrays:
        arrays["moving_variance"] = np.abs(arrays["moving_variance"])
    return npnet.layer(node, arrays)


def test_dense():
    check(layer("dense", (12,), units=5), rng.standard_normal((7, 12)), lambda x, k, b: x @ k + b,
          ("kernel", "bias"))


def test_dense_without_bias():
    check(layer("dense", (12,), units=5, bias=False), rng.standard_normal((7, 12)), lambda x, k: x @ k, ("kernel",))


@pytest.mark.parametrize("size,stride,padding", [(1, 1, 0), (3, 1, 1), (5, 1, 2), (3, 2, 1), (3, 2, 0),
                                                 (1, 2, 0), (5, 3, 1)])
def test_conv2d(size, stride, padding):
    lay = layer("conv2d", (7, 6, 3), filters=4, kernel=size, stride=stride, padding=padding)
    check(lay, rng.standard_normal((2, 7, 6, 3)),
          lambda x, k, b: nhwc(F.conv2d(nchw(x), k.permute(3, 2, 0, 1), b, stride=stride, padding=padding)),
          ("kernel", "bias"))


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv2d(stride):
    lay = layer("conv2d", (8, 7, 5), filters=5, kernel=3, stride=stride, padding=1, groups=5, bias=False)
    check(lay, rng.standard_normal((3, 8, 7, 5)),
          lambda x, k: nhwc(F.conv2d(nchw(x), k.permute(3, 2, 0, 1), stride=stride, padding=1, groups=5)),
          ("kernel",))


def test_batchnorm_trains_on_batch_statistics_and_updates_the_moving_ones():
    lay = layer("batchnorm", (4, 3, 6), momentum=0.1, eps=1e-3)
    mean0, var0 = lay.params["moving_mean"].copy(), lay.params["moving_variance"].copy()
    tm, tv = torch.tensor(mean0), torch.tensor(var0)
    x = rng.standard_normal((5, 4, 3, 6)) * 2 + 1
    check(lay, x, lambda x, gamma, beta: nhwc(F.batch_norm(nchw(x), tm, tv, gamma, beta, training=True,
                                                           momentum=0.1, eps=1e-3)), ("gamma", "beta"))
    assert rel_err(lay.params["moving_mean"], tm.numpy()) <= RTOL
    assert rel_err(lay.params["moving_variance"], tv.numpy()) <= RTOL


def test_batchnorm_inference_uses_the_moving_statistics():
    lay = layer("batchnorm", (4, 3, 6))
    p = {k: torch.tensor(v) for k, v in lay.params.items()}
    x = rng.standard_normal((5, 4, 3, 6))
    expected = nhwc(F.batch_norm(nchw(torch.tensor(x)), p["moving_mean"], p["moving_variance"], p["gamma"],
                                 p["beta"], training=False, eps=1e-3))
    assert rel_err(lay.forward(x), expected.numpy()) <= RTOL


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 2)])  # even, and ragged edges dropped
@pytest.mark.parametrize("size,stride", [(2, 0), (3, 2), (3, 1)])
def test_maxpool(shape, size, stride):
    x = rng.standard_normal(shape)
    lay = layer("maxpool", shape[1:], size=size, stride=stride)
    check(lay, x, lambda x: nhwc(F.max_pool2d(nchw(x), size, stride or size)))
    assert np.array_equal(lay.forward(x), lay.forward(x, train=True))  # the same answer either way


@pytest.mark.parametrize("size,stride", [(2, 0), (3, 2)])
def test_avgpool(size, stride):
    x = rng.standard_normal((2, 7, 9, 2))
    check(layer("avgpool", (7, 9, 2), size=size, stride=stride), x,
          lambda x: nhwc(F.avg_pool2d(nchw(x), size, stride or size)))


def test_global_average_pool():
    check(layer("gap", (5, 4, 3)), rng.standard_normal((2, 5, 4, 3)), lambda x: x.mean((1, 2)))


@pytest.mark.parametrize("top,bottom,left,right", [(0, 1, 0, 1), (2, 1, 0, 3)])
def test_pad(top, bottom, left, right):
    check(layer("pad", (5, 4, 3), top=top, bottom=bottom, left=left, right=right), rng.standard_normal((2, 5, 4, 3)),
          lambda x: nhwc(F.pad(nchw(x), (left, right, top, bottom))))


def test_add_passes_the_gradient_to_both_inputs():
    a, b = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((2, 3, 3, 4))
    lay = layer("add", (3, 3, 4))
    assert np.array_equal(lay.forward(a, b), a + b)
    dy = rng.standard_normal(a.shape)
    da, db = lay.backward(dy)
    assert np.array_equal(da, dy) and np.array_equal(db, dy)


def test_dropout_scales_what_it_keeps_and_is_the_identity_in_inference():
    lay = layer("dropout", (1000,), rate=0.25)
    x = rng.standard_normal((4, 1000))
    assert lay.forward(x) is x
    y = lay.forward(x, train=True)
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8 and np.allclose(y[kept], x[kept] / 0.75)
    dy = rng.standard_normal(x.shape)
    assert np.array_equal(lay.backward(dy), dy * lay.mask)


def test_relu():
    check(layer("relu", (9,)), rng.standard_normal((4, 9)), torch.relu)


def test_relu6():
    check(layer("relu6", (9,)), rng.standard_normal((4, 9)) * 5, F.relu6)


def test_sigmoid():
    x = rng.standard_normal((4, 9)) * 3
    x[0, :3] = [-800.0, 800.0, 0.0]  # the stable form must not overflow at the extremes
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        check(layer("sigmoid", (9,)), x, torch.sigmoid)


def test_flatten_in_nhwc_order():
    check(layer("flatten", (4, 5, 2)), rng.standard_normal((3, 4, 5, 2)), lambda x: x.reshape(3, -1))


def test_binary_logits():
    check(layer("binary_logits", (1,)), rng.standard_normal((5, 1)),
          lambda x: torch.cat([torch.zeros_like(x), x], 1))


def test_softmax_cross_entropy():
    logits, labels = rng.standard_normal((6, 4)) * 4, np.array([0, 3, 1, 1, 2, 3])
    loss, grad = npnet.softmax_cross_entropy(logits, labels)
    tl = t(logits)
    expected = F.cross_entropy(tl, torch.from_numpy(labels))
    expected.backward()
    assert rel_err(loss, expected.item()) <= RTOL
    assert rel_err(grad, tl.grad.numpy()) <= RTOL


ZOO_SMALL = [("cnn", (8, 8, 1)), ("mobilenet", (16, 16, 3)), ("resnet", (12, 12, 3))]


@pytest.mark.parametrize("arch,shape", ZOO_SMALL)
def test_whole_network_against_the_torch_twin(arch, shape):
    """A zoo network's loss and every trainable gradient in NumPy equal those of its
    PyTorch twin with the same weights (through the bridge's layouts), in training mode
    (BN on batch statistics), end to end in float64; so do the updated BN statistics."""
    from edgecnn.converters import bridge
    spec = models.ModelSpec(arch, shape, [str(i) for i in range(10)])
    g = spec.graph
    net = models.build_numpy(spec, seed=3, dtype=np.float64)
    for n in net.layers:  # dropout draws different masks in each framework: leave it out here
        if n.kind == "dropout":
            n.node = dict(n.node, rate=0.0)
    twin = models.build_torch(spec).double()
    for m in twin.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    bridge.load_into("torch", twin, bridge.arrays_of("numpy", net, g), g)
    twin.train()
    x, y = rng.random((5, *shape)), np.array([1, 2, 3, 4, 5])
    loss, d = npnet.softmax_cross_entropy(net.forward(x, train=True), y)
    net.backward(d)
    tloss = F.cross_entropy(twin(torch.from_numpy(x).permute(0, 3, 1, 2)), torch.from_numpy(y))
    tloss.backward()
    grads = bridge.arrays_of("torch", twin, g, grads=True)
    assert rel_err(loss, tloss.item()) <= RTOL
    # a BN shift followed (through a linear conv) by another BN in training mode has a
    # gradient of exactly 0 in theory, rounding noise (1e-16) in each framework: the
    # floor keeps that noise from reading as a relative error of 1
    errors = {k: rel_err(gr, grads[k], floor=1e-9) for k, gr in net.grads.items()}
    assert set(errors) == set(grads) == set(net.trainable) and all(e <= RTOL for e in errors.values()), errors
    after = bridge.arrays_of("torch", twin, g)
    stats = {k: rel_err(v, after[k], floor=1e-9) for k, v in net.params.items() if "moving" in k}
    assert all(e <= RTOL for e in stats.values()), stats


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
        variant("empty", **{"conv1.kernel": np.zeros((3, 3, 1, 0), np.float32)}): r"its layer needs \(3, 3, 1, 32\)",
        variant("kernel", lambda m: m["graph"][0].update(kernel=101)): "kernel must be a whole number from 1 to 15",
        variant("dtype", **{"fc2.bias": np.zeros(10, np.float64)}): "float64",
        variant("unknown", lambda m: m["graph"].insert(0, {"op": ["relu"]})): "unknown op",
        variant("mismatch", **{"fc1.kernel": np.zeros((7, 128), np.float32)}): "its layer needs",
        variant("add", lambda m: m["graph"].insert(3, {"op": "add", "name": "a", "inputs": ["conv1", "pool1"]})):
            "layer 'a': add: adds mismatched shapes 8x8x32 and 4x4x32",
        variant("dangling", lambda m: m["graph"][0].update(name="c1")): "layer 'relu1': input 'conv1' is not an "
                                                                          "earlier layer",
        variant("extra", lambda m: m["graph"][0].update(bias=False)): "array 'conv1.bias' that no layer uses",
    }
    for path, reason in cases.items():
        with pytest.raises(npnet.ModelFileError, match=reason):
            npnet.load(path)
    assert npnet.load(good).classes == 10


def test_version_1_files_still_load(tmp_path):
    """A file from before models as data (a plain stack of layers, unnamed activations)
    loads and gives the same logits as the same network written today."""
    spec = models.ModelSpec("cnn", (8, 8, 1), [str(i) for i in range(10)])
    net = models.build_numpy(spec, seed=2)
    layers = [{"type": "conv2d", "name": "conv1", "filters": 32, "size": 3, "padding": "same"}, {"type": "relu"},
              {"type": "maxpool", "size": 2},
              {"type": "conv2d", "name": "conv2", "filters": 64, "size": 3, "padding": "same"}, {"type": "relu"},
              {"type": "maxpool", "size": 2}, {"type": "flatten"},
              {"type": "dense", "name": "fc1", "units": 128}, {"type": "relu"},
              {"type": "dense", "name": "fc2", "units": 10}]
    meta = dict(net.config(), version=1, layers=layers)
    del meta["graph"]
    path = tmp_path / "v1.npz"
    np.savez(path, __model__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **net.params)
    x = rng.random((3, 8, 8, 1), dtype=np.float32)
    assert np.array_equal(npnet.load(path).forward(x), net.forward(x))
