"""ExecuTorch (.pte): what the contract test (test_formats) and the fuzz suite do not
show. The delegate takes every op of edgecnn's graphs; a file it did not take is made
here with ExecuTorch's own API, as a user's could be, and inspect and export say so."""
import json

import numpy as np
import pytest

from conftest import FAST_BENCH, assert_bad_input, edgecnn
from edgecnn.runtime import runner_for


def test_every_op_is_delegated_and_inspect_shows_it(digits_pte):
    manifest = json.loads((digits_pte / "manifest.json").read_text())
    assert [(a["format"], a["precision"]) for a in manifest["artifacts"]] == [("pte", "fp32"), ("pte", "int8")]
    for a in manifest["artifacts"]:
        assert a["notes"]["delegate"] == "XNNPACK" and a["notes"]["portable_ops"] == {}, a
        assert a["notes"]["delegated_calls"] >= 1
        r = edgecnn("inspect", digits_pte / a["file"], "--json")
        assert r.code == 0, r
        assert r.json["precision"] == a["precision"] and r.json["concerns"] == []
        assert set(r.json["operators"]) == {"XnnpackBackend (delegate)"}, r.json
    sizes = {a["precision"]: a["bytes"] for a in manifest["artifacts"]}
    assert sizes["int8"] < 0.4 * sizes["fp32"], sizes


def test_the_runner_sets_the_runtime_s_thread_pool(digits_pte):
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count
    x = np.zeros((3, 8, 8, 1), np.float32)
    for threads in (1, 2):
        runner = runner_for("pte", digits_pte / "model.fp32.pte", threads).load()
        assert _threadpool_get_thread_count() == threads
        assert not runner.batchable and runner.infer(x[:1]).shape == (1, 10)


@pytest.fixture(scope="module")
def portable_pte(digits_run, tmp_path_factory):
    """The digits model lowered without a partitioner: every op a portable kernel."""
    import torch
    from executorch.exir import to_edge_transform_and_lower
    from edgecnn.toolchain.runs import Run
    _, model = Run(digits_run).load_twin()
    program = torch.export.export(model.eval(), (torch.zeros(1, 1, 8, 8),))
    path = tmp_path_factory.mktemp("portable") / "mine.pte"
    path.write_bytes(to_edge_transform_and_lower(program).to_executorch().buffer)
    return path


def test_inspect_warns_about_portable_operators(portable_pte):
    r = edgecnn("inspect", portable_pte)
    assert r.code == 0, r
    warnings = [line for line in r.out.splitlines() if line.strip().startswith("warning")]
    assert len(warnings) == 1 and "portable kernels" in warnings[0] and "aten::convolution" in warnings[0], r.out
    assert "precision  unknown" in r.out  # no manifest, and the operators do not say
    r = edgecnn("inspect", portable_pte, "--json")
    assert "aten::convolution" in r.json["operators"] and len(r.json["concerns"]) == 1


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_pte_is_one_line_and_exit_2(digits_pte, tmp_path, damage):
    seed = (digits_pte / "model.int8.pte").read_bytes()
    bad = tmp_path / "model.int8.pte"
    bad.write_bytes(seed[: len(seed) // 3] if damage == "truncated" else bytes(np.random.default_rng(0).integers(
        0, 256, 4000, dtype=np.uint8)))
    assert_bad_input(edgecnn("inspect", bad), "model.int8.pte")
    assert_bad_input(edgecnn("validate", bad, *FAST_BENCH), "model.int8.pte")
    assert bad.stat().st_size == (len(seed) // 3 if damage == "truncated" else 4000)  # left as it was


def test_a_float_layer_stays_float_and_the_rest_int8(digits_run, tmp_path):
    """--float-layers through the quantizer's node filter: conv1's convolution reads
    float weights in PT2E's converted program, the other three layers int8 ones."""
    import torch
    from edgecnn.converters import pte
    from edgecnn.runtime.evaluate import nchw
    from edgecnn.toolchain.runs import Run
    _, model = Run(digits_run).load_twin()
    calib = torch.from_numpy(nchw(np.random.default_rng(0).random((20, 8, 8, 1), np.float32)))
    made = pte._calibrated(model.eval(), calib, pte._quantizer("histogram", "per-channel", {"conv1": ["conv1"]}))
    layers = {}
    for node in made.graph.nodes:
        if node.target in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
            weight = node.args[1]
            name = list(node.meta["nn_module_stack"].values())[-1][0]
            layers[name] = weight.op == "call_function" and "dequantize" in str(weight.target)
    assert layers == {"conv1": False, "conv2": True, "fc1": True, "fc2": True}, layers

    out = tmp_path / "arts"
    r = edgecnn("export", digits_run, "--precisions", "int8", "--formats", "pte", "--float-layers", "conv1",
                "--out", out)
    assert r.code == 0 and "ok, float: conv1" in r.out, r
    assert json.loads((out / "manifest.json").read_text())["artifacts"][0]["notes"]["float_layers"] == ["conv1"]
    r = edgecnn("validate", out, "--json", *FAST_BENCH)
    assert r.code == 0 and r.json["results"][0]["status"] == "pass", r


def test_relu6_outputs_are_observed_after_their_clamp():
    """XNNPACK's quantizer fuses only relu into the conv before it; edgecnn's annotates a
    conv and its relu6 (aten.hardtanh) as one op, so each relu6 output is quantized on a
    range that starts at 0 (zero point -128) and ends at 6 at most, with no int8 step
    between the conv and its clamp. A float layer keeps its float weights."""
    import torch
    from edgecnn.converters import pte
    from edgecnn.runtime.evaluate import nchw
    from edgecnn.toolchain import convert, models
    spec = models.ModelSpec("mobilenet", (8, 8, 1), [str(i) for i in range(10)], width=0.5)
    relu6 = [n["name"] for n in spec.graph.nodes if n["op"] == "relu6"]
    calib = torch.from_numpy(nchw(np.random.default_rng(0).random((20, 8, 8, 1), np.float32)))
    for floats in ({}, {"stem": spec.graph.folded_chain("stem")}):
        made = pte._calibrated(convert.BUILDERS["torch"](spec), calib, pte._quantizer("histogram", "per-channel", floats))
        q = torch.ops.quantized_decomposed.quantize_per_tensor.default  # (registered by torchao)
        clamps = [n for n in made.graph.nodes if n.target == torch.ops.aten.hardtanh.default]
        assert len(clamps) == len(relu6) > 5
        for clamp in clamps:
            stem = list(clamp.meta["nn_module_stack"].values())[-1][0] == "stem_relu6"
            assert clamp.args[0].target == torch.ops.aten.conv2d.default, clamp.args[0]
            weight = clamp.args[0].args[1]
            assert (weight.op == "get_attr") == (stem and bool(floats)), weight  # a float layer's, else a dequantize
            if stem and floats:
                continue
            outs = [u for u in clamp.users if u.target == q]
            assert outs and all(u.args[2] == -128 and u.args[1] <= 6 / 255 * (1 + 1e-6) for u in outs), \
                [(u.args[1], u.args[2]) for u in outs]


def test_a_functional_relu6_after_a_linear_layer_is_observed_after_it_too(tmp_path):
    """F.relu6 is captured as aten.relu6, nn.ReLU6 as hardtanh; after a conv or a linear
    layer, both are quantized from 0, and the file stays one delegate call."""
    import torch
    import torch.nn.functional as F
    from edgecnn.converters import pte

    class Mine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc, self.out = torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(144, 16), torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.out(F.relu6(self.fc(torch.flatten(F.relu6(self.conv(x)), 1))))
    calib = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    made = pte._calibrated(Mine().eval(), calib, pte._quantizer("histogram", "per-channel", {}))
    q = torch.ops.quantized_decomposed.quantize_per_tensor.default
    clamps = {n.args[0].target: [u.args[2] for u in n.users if u.target == q]
              for n in made.graph.nodes if n.target == torch.ops.aten.relu6.default}
    assert clamps == {torch.ops.aten.conv2d.default: [-128], torch.ops.aten.linear.default: [-128]}, clamps
    meta = pte.export(Mine().eval(), "int8", calib.numpy().transpose(0, 2, 3, 1), tmp_path / "m.pte", {})
    assert meta["notes"]["delegated_calls"] == 1 and meta["notes"]["portable_ops"] == {}, meta["notes"]
