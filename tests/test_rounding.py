"""int8 weights rounded by GPTQ (converters/rounding.py): it keeps a layer's output closer
to float than rounding each weight does, and every int8 file holds exactly the integers
it chose, on the scales its own quantizer chose."""
import json

import numpy as np
import pytest

from conftest import assert_bad_input, edgecnn
from test_models import USER


def test_gptq_keeps_a_cancelling_kernel_output_closer_than_nearest():
    """Zero-sum 3x3 kernels (edge detectors, whose taps cancel on flat patches, as the
    zoo resnet's stem learned) on real image patches: GPTQ's output error, measured on
    patches it was not fitted on, is well below rounding each weight to nearest."""
    from sklearn.datasets import load_digits
    from edgecnn.converters.rounding import gptq
    images = load_digits().images / 16.0
    patches = np.lib.stride_tricks.sliding_window_view(images, (3, 3), axis=(1, 2)).reshape(-1, 9)
    fit, held = patches[:20000], patches[20000:]
    for qmax in (127, 64):  # TFLite's range; ONNX Runtime's 7-bit one
        for seed in range(5):
            w = np.random.default_rng(seed).normal(size=(16, 9))
            w -= w.mean(1, keepdims=True)
            step = np.abs(w).max(1) / qmax
            nearest = np.clip(np.rint(w / step[:, None]), -qmax, qmax)
            q = gptq(w, fit.T @ fit, step, -qmax, qmax)
            assert q.min() >= -qmax and q.max() <= qmax

            def error(ints):
                return np.mean((held @ (ints * step[:, None] - w).T) ** 2)
            assert error(q) < 0.7 * error(nearest), (qmax, seed, error(q), error(nearest))


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    """A user architecture with BN (folded into its conv by every converter), a depthwise
    conv, a residual add and a dense layer, trained briefly on digits."""
    root = tmp_path_factory.mktemp("rounding")
    (root / "mine.toml").write_text(USER)
    run = root / "run"
    r = edgecnn("train", "--model", root / "mine.toml", "--epochs", "3", "--out", run)
    assert r.code == 0, r
    return run


def _export(run, out, *extra):
    r = edgecnn("export", run, "--precisions", "int8", "--formats", "tflite,onnx", "--out", out, *extra)
    assert r.code == 0, r
    return json.loads((out / "manifest.json").read_text())


def _rounder(run, manifest):
    """The rounder export used: the run's weights and the manifest's calibration images."""
    from edgecnn.converters import bridge
    from edgecnn.converters.rounding import Rounder
    from edgecnn.runtime.evaluate import scale
    from edgecnn.toolchain import data
    from edgecnn.toolchain.runs import Run
    r = Run(run)
    kind, model = r.load_twin()
    ds = data.load(r.dataset, None)
    calib = scale(ds.x_train[manifest["calibration"]["indices"]], r.spec.scaling)
    return Rounder(r.spec.graph, bridge.arrays_of(kind, model, r.spec.graph), calib)


def _tflite_weights(path):
    """(integers in canonical layout, scales) of each int8 conv and dense kernel."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(str(path))
    out = []
    for t in it.get_tensor_details():
        q = t["quantization_parameters"]
        per_channel = len(q["scales"]) > 1 and len(q["scales"]) == t["shape"][q["quantized_dimension"]]
        if t["dtype"] == np.int8 and len(t["shape"]) in (2, 4) and per_channel:  # not an activation
            a = it.get_tensor(t["index"])
            a = a.T if a.ndim == 2 else a.transpose(1, 2, 0, 3) if q["quantized_dimension"] == 3 else a.transpose(1, 2, 3, 0)
            out.append((a, q["scales"]))
    return out


def _onnx_weights(path):
    """(integers in PyTorch's layout, scales) of each int8 conv and dense kernel."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [(init[n.input[0]], init[n.input[1]]) for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in init and init[n.input[0]].dtype == np.int8
            and init[n.input[0]].ndim in (2, 4)]


def _matches(weights, expected):
    """For each layer, whether the file holds the integers `expected(layer, scales)` gives
    for one of its kernels' scales."""
    def holds(q, layer, s):
        try:
            return np.array_equal(q, expected(layer, s))
        except ValueError:  # another layer's scales: not as many as this one's channels
            return False
    return {layer: any(holds(q, layer, s) for q, s in weights) for layer in ("stem", "dw", "conv", "dense11")}


def test_every_int8_layer_holds_the_integers_gptq_chose(bn_run, tmp_path):
    """The TFLite and ONNX files' int8 kernels (BN folded, depthwise, dense) are exactly
    GPTQ's for the scales their quantizers chose; `--weight-rounding nearest` leaves the
    quantizers' own, which are not."""
    manifest = _export(bn_run, tmp_path / "gptq")
    rounder = _rounder(bn_run, manifest)
    assert rounder.layers({}) == ["stem", "dw", "conv", "dense11"]
    for a in manifest["artifacts"]:
        assert a["options"]["weight_rounding"] == "gptq" and "gptq rounding" in a["notes"]["quantization"], a
    tfl = _tflite_weights(tmp_path / "gptq" / "model.int8.tflite")
    onx = _onnx_weights(tmp_path / "gptq" / "model.int8.onnx")
    assert len(tfl) == len(onx) == 4
    assert all(_matches(tfl, lambda n, s: rounder.integers(n, s, -127, 127)).values())
    assert all(_matches(onx, lambda n, s: rounder.torch_integers(n, s, -64, 64)).values())

    manifest = _export(bn_run, tmp_path / "nearest", "--weight-rounding", "nearest")
    assert all(a["options"]["weight_rounding"] == "nearest" and "nearest rounding" in a["notes"]["quantization"]
               for a in manifest["artifacts"])
    tfl = _tflite_weights(tmp_path / "nearest" / "model.int8.tflite")
    onx = _onnx_weights(tmp_path / "nearest" / "model.int8.onnx")
    assert not all(_matches(tfl, lambda n, s: rounder.integers(n, s, -127, 127)).values())
    assert not all(_matches(onx, lambda n, s: rounder.torch_integers(n, s, -64, 64)).values())
    r = edgecnn("validate", tmp_path / "gptq", "--bench-runs", "20", "--bench-seconds", "0.02", "--json")
    assert r.code == 0 and all(x["status"] == "pass" for x in r.json["results"]), r


@pytest.mark.parametrize("granularity", ["per-channel", "per-tensor"])
def test_ptl_int8_layers_hold_the_integers_gptq_chose(bn_run, granularity):
    """torch.ao's quantized modules, before the file is traced, on both engines' config:
    each layer's 7-bit integers are GPTQ's for torch.ao's own scales."""
    import torch
    from edgecnn.converters import bridge, ptl
    from edgecnn.runtime.evaluate import nchw
    from edgecnn.toolchain import models
    from edgecnn.toolchain.runs import Run
    run = Run(bn_run)
    kind, source = run.load_twin()
    twin = models.build_torch(run.spec).eval()
    bridge.copy_weights(kind, source, "torch", twin, run.spec.graph)
    manifest = {"calibration": {"indices": list(range(100))}}
    rounder = _rounder(bn_run, manifest)
    calib = torch.from_numpy(nchw(rounder.images))
    low, high = ptl.WEIGHT_RANGE
    made = ptl._quantized(twin, calib, "x86", {}, scales=granularity, rounder=rounder).body
    plain = ptl._quantized(twin, calib, "x86", {}, scales=granularity).body
    differ = 0
    for layer in rounder.layers({}):
        w = getattr(made, layer).weight()
        scales = (w.q_per_channel_scales().numpy() if granularity == "per-channel" else w.q_scale())
        assert np.array_equal(w.int_repr().numpy(), rounder.torch_integers(layer, scales, low, high)), layer
        differ += not np.array_equal(w.int_repr().numpy(), getattr(plain, layer).weight().int_repr().numpy())
    assert differ, "GPTQ chose the quantizer's own integers for every layer"


@pytest.mark.parametrize("granularity", ["per-channel", "per-tensor"])
def test_pte_int8_layers_hold_the_integers_gptq_chose(bn_run, granularity):
    """PT2E's converted program, before it is lowered into XNNPACK's blob (where its
    integers can no longer be read): each int8 weight constant, found by its dequantize,
    holds GPTQ's integers for the XNNPACK quantizer's own scales."""
    import torch
    from edgecnn.converters import bridge, pte
    from edgecnn.runtime.evaluate import nchw
    from edgecnn.toolchain import models
    from edgecnn.toolchain.runs import Run
    run = Run(bn_run)
    kind, source = run.load_twin()
    twin = models.build_torch(run.spec).eval()
    bridge.copy_weights(kind, source, "torch", twin, run.spec.graph)
    rounder = _rounder(bn_run, {"calibration": {"indices": list(range(100))}})
    calib = torch.from_numpy(nchw(rounder.images))
    low, high = pte.WEIGHT_RANGE

    def weights(module):
        dq = torch.ops.quantized_decomposed
        out = []
        for node in module.graph.nodes:
            if node.target in (dq.dequantize_per_channel.default, dq.dequantize_per_tensor.default) \
                    and node.args[0].op == "get_attr" and getattr(module, node.args[0].target).dtype == torch.int8:
                s = node.args[1]
                out.append((getattr(module, node.args[0].target).numpy(),
                            getattr(module, s.target).numpy() if hasattr(s, "op") else s))
        return out

    quantizer = pte._quantizer("histogram", granularity, {})
    made = pte._calibrated(twin, calib, quantizer)
    pte._round(made, rounder, {})
    plain = pte._calibrated(twin, calib, pte._quantizer("histogram", granularity, {}))
    held, own = weights(made), weights(plain)
    assert len(held) == 4
    assert all(_matches(held, lambda n, s: rounder.torch_integers(n, s, low, high)).values())
    assert not all(_matches(own, lambda n, s: rounder.torch_integers(n, s, low, high)).values())


def test_weight_rounding_needs_int8_and_a_known_name(digits_run):
    assert_bad_input(edgecnn("export", digits_run, "--weight-rounding", "gptq", "--out", "nowhere"),
                     "--weight-rounding", "--int8")
    r = edgecnn("export", digits_run, "--int8", "--weight-rounding", "floor", "--out", "nowhere")
    assert r.code == 2 and "floor" in r.err and "Traceback" not in r.err, r
