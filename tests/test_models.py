"""Models as data: the zoo's graphs, the three twins built from them (same layers, same
parameter count, the same outputs through the weight bridge), and users' own
architecture files with one clear line for each kind of mistake."""
import json

import numpy as np
import pytest

from edgecnn.converters import bridge
from edgecnn.toolchain import models
from edgecnn.toolchain.errors import BadInput

TEN = [str(i) for i in range(10)]
ZOO = ("cnn", "mobilenet", "resnet")


def test_the_seed_cnn_keeps_its_parameter_count_on_mnist_shape():
    spec = models.ModelSpec("cnn", (28, 28, 1), TEN)
    torch_params = models.count_params_torch(models.build_torch(spec))
    keras_params = models.build_keras(spec).count_params()
    # conv 3*3*1*32+32, conv 3*3*32*64+64, dense 7*7*64*128+128, dense 128*10+10
    assert torch_params == keras_params == spec.graph.count_params() == 320 + 18496 + 401536 + 1290
    # MACs: 28*28*32*9 + 14*14*64*9*32 + 3136*128 + 128*10
    assert spec.graph.macs() == 225792 + 3612672 + 401408 + 1280


@pytest.mark.parametrize("arch", ZOO)
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (13, 9, 1)])
def test_twins_agree_through_the_bridge(arch, shape):
    """Random weights (BN statistics too) copied numpy -> torch and numpy -> keras give
    the same logits, and read back bit for bit: depthwise layouts, BN buffers, the
    flatten permutation, Keras's asymmetric "same" padding at stride 2 all handled."""
    rng = np.random.default_rng(0)
    spec = models.ModelSpec(arch, shape, ["a", "b", "c"])
    g = spec.graph
    net = models.build_numpy(spec, seed=1)
    for k, v in net.params.items():
        if "moving" in k or "gamma" in k:
            v[:] = rng.uniform(0.5, 2.0, v.shape) if "mean" not in k else rng.normal(0, 0.5, v.shape)
    t, k = models.build_torch(spec), models.build_keras(spec)
    assert models.count_params_torch(t) == k.count_params() == net.count_params() == g.count_params()
    bridge.copy_weights("numpy", net, "torch", t, g)
    bridge.copy_weights("numpy", net, "keras", k, g)
    x = rng.random((8, *shape), dtype=np.float32)
    assert bridge.prove("numpy", net, "torch", t, x) <= 1e-5
    assert bridge.prove("numpy", net, "keras", k, x) <= 1e-5
    for kind, twin in (("torch", t), ("keras", k)):
        back = bridge.arrays_of(kind, twin, g)
        assert set(back) == set(net.params) and all(np.array_equal(back[n], net.params[n]) for n in back)


def test_mobilenet_width_scales_channels_and_stays_small():
    full = models.ModelSpec("mobilenet", (28, 28, 1), TEN)
    half = models.ModelSpec("mobilenet", (28, 28, 1), TEN, width=0.5)
    assert half.graph.count_params() < full.graph.count_params() / 2
    assert any(n["op"] == "conv2d" and n["groups"] > 1 for n in full.graph.nodes)   # depthwise
    assert sum(n["op"] == "add" for n in full.graph.nodes) >= 3                      # inverted residuals
    with pytest.raises(BadInput, match="--width must be"):
        models.ModelSpec("mobilenet", (28, 28, 1), TEN, width=0)


@pytest.mark.parametrize("arch", ZOO + ("mlp",))
def test_spec_round_trips_through_json_with_its_graph(arch):
    spec = models.ModelSpec(arch, (8, 8, 1) if arch in ("cnn", "mlp") else (16, 16, 3), TEN,
                            **({"hidden": [4]} if arch == "mlp" else {}))
    d = json.loads(json.dumps(spec.to_json()))
    assert d["scaling"]["divide_by"] == 255.0 and d["params"] == spec.graph.count_params() and d["macs"] > 0
    assert models.ModelSpec.from_json(d) == spec
    del d["graph"]  # spec.json files from before models as data: the zoo's graph
    assert models.ModelSpec.from_json(d) == spec


def test_too_small_input_is_refused_naming_the_layer():
    with pytest.raises(BadInput, match="model 'cnn' on 3x3x1 images: layer 'pool2': maxpool: a 2x2 window needs"):
        models.build_torch(models.ModelSpec("cnn", (3, 3, 1), TEN))


def test_fusion_patterns_come_from_the_graph():
    from edgecnn.converters import ptl
    assert ptl.fusions(models.build_torch(models.ModelSpec("cnn", (28, 28, 1), TEN))) == [
        ["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]]
    fused = ptl.fusions(models.build_torch(models.ModelSpec("resnet", (28, 28, 1), TEN)))
    assert ["stem", "stem_bn", "stem_relu"] in fused and ["b1_conv2", "b1_conv2_bn"] in fused
    assert ["b2_short", "b2_short_bn"] in fused


@pytest.mark.parametrize("engine", ["qnnpack", "x86"])
def test_the_int8_ptl_quantizes_each_relu6_output_from_0_to_6_at_most(engine):
    """torch.ao fuses only relu into the conv before it, and a ReLU6 shares its input's
    quantization; edgecnn observes each conv's output after the clamp, so the int8 conv
    writes [0, 6] at most (zero point 0) and the clamp itself is gone. A float layer's
    closing quantize is ranged the same way."""
    import torch
    from torch.ao.nn.quantized import Quantize
    from edgecnn.converters import ptl
    from edgecnn.runtime.evaluate import nchw
    spec = models.ModelSpec("mobilenet", (8, 8, 1), TEN, width=0.5)
    relu6 = [n for n in spec.graph.nodes if n["op"] == "relu6"]
    producers = {n["name"]: n["inputs"][0] for n in spec.graph.nodes}
    calib = torch.from_numpy(nchw(np.random.default_rng(0).random((20, 8, 8, 1), np.float32)))
    for floats in ({}, {"stem": spec.graph.folded_chain("stem")}):
        body = ptl._quantized(models.build_torch(spec), calib, engine, floats).body
        assert len(relu6) > 5
        for node in relu6:
            assert isinstance(getattr(body, node["name"]), torch.nn.Identity), node["name"]
            conv = getattr(body, producers[producers[node["name"]]])  # relu6 <- batchnorm <- conv
            out = conv[-1] if floats and conv is body.stem else conv
            assert isinstance(out, Quantize) == (conv is body.stem and bool(floats)), out
            assert int(out.zero_point) == 0 and 0 < float(out.scale) <= 6 / 255 * (1 + 1e-6), (node["name"], out)


USER = """
# a user's own small CNN: BN, a depthwise conv, a residual add and global average pooling
[[layers]]
op = "conv2d"
name = "stem"
filters = 16
stride = 2
bias = false
[[layers]]
op = "batchnorm"
name = "stem_bn"
[[layers]]
op = "relu"
name = "stem_relu"
[[layers]]
op = "conv2d"
name = "dw"
filters = 16
groups = 16
[[layers]]
op = "relu6"
name = "dw_relu"
[[layers]]
op = "add"
name = "res"
inputs = ["stem_relu", "dw_relu"]
[[layers]]
op = "conv2d"
name = "conv"
filters = 32
stride = 2
[[layers]]
op = "relu"
[[layers]]
op = "maxpool"
[[layers]]
op = "gap"
[[layers]]
op = "dense"
units = "classes"
"""


def test_a_user_architecture_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(USER)
    spec = models.from_file(path, (32, 32, 3), TEN)
    assert spec.arch == "custom" and spec.graph.output_shape == (10,)
    assert spec.graph.shapes["res"] == (16, 16, 16)
    j = tmp_path / "mine.json"
    j.write_text(json.dumps({"layers": spec.to_json()["graph"]}))
    assert models.from_file(j, (32, 32, 3), TEN).graph.to_json() == spec.graph.to_json()
    assert models.ModelSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("change,message", [
    (lambda t: t.replace('op = "relu6"', 'op = "swish"'), "layer 'dw_relu': unknown op 'swish'"),
    (lambda t: t.replace("groups = 16", "groups = 4"), "layer 'dw': conv2d: groups must be 1, or the input"),
    (lambda t: t.replace('inputs = ["stem_relu", "dw_relu"]', 'inputs = ["stem_relu", "gap"]'),
     "layer 'res': input 'gap' is not an earlier layer"),
    (lambda t: t.replace('name = "dw"\nfilters = 16', 'name = "dw"\nfilters = 16\nstride = 2')
     .replace("groups = 16", "groups = 16\npadding = 1"), "layer 'res': add: adds mismatched shapes 16x16x16 and "
                                                          "8x8x16"),
    (lambda t: t.replace('units = "classes"', "units = 7"), "layer 'dense11' outputs 7, not one logit per class"),
    (lambda t: t.replace("filters = 16\nstride = 2", "filters = 16\nkernel = 40"), "kernel must be a whole number"),
    (lambda t: t.replace('op = "gap"', 'op = "flatten"').replace('units = "classes"', "units = 200000"),
     "layer 'dense11': units must be a whole number from 1 to 65536"),
    (lambda t: t.replace('op = "gap"', 'op = "flatten"').replace('units = "classes"', "units = 65536")
     + '[[layers]]\nop = "dense"\nunits = 1000\n[[layers]]\nop = "dense"\nunits = 10\n',
     "parameters; edgecnn's limit"),
    (lambda t: t.replace("filters = 16\nstride = 2", "filters = 512\nstride = 1").replace(
        'filters = 16\ngroups = 16', 'filters = 512'), "multiply-accumulates per image; edgecnn's limit"),
    (lambda t: t + "[[layers]]\nop = 'dense'\nunits = 10\nsize = 3\n", "dense has no attribute 'size'"),
    (lambda t: "layers = 3", "no list of layers"),
    (lambda t: t + "[broken", "not valid TOML"),
])
def test_a_bad_architecture_file_gets_one_line_naming_the_layer(tmp_path, change, message):
    path = tmp_path / "bad.toml"
    path.write_text(change(USER))
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        models.from_file(path, (32, 32, 3), TEN)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name,framework", [("image", "keras"), ("forward", "torch")])
def test_a_layer_name_a_framework_needs_is_refused(tmp_path, name, framework):
    path = tmp_path / "names.toml"
    path.write_text(USER.replace('name = "stem_relu"', f'name = "{name}"').replace('"stem_relu"', f'"{name}"'))
    spec = models.from_file(path, (32, 32, 3), TEN)
    with pytest.raises(BadInput, match=f"layer '{name}': the name is taken"):
        (models.build_keras if framework == "keras" else models.build_torch)(spec)
