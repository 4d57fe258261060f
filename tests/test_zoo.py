"""The zoo and a user's own architecture, end to end through the CLI: trained in every
framework, exported to every format, every artifact validated on its runtime.

Small data for the broad matrix (digits, and digits drawn as 32x32 RGB images); the
Fashion-MNIST numbers are in the README and benchmarks, not asserted here."""
import json

import pytest

from conftest import FAST_BENCH, edgecnn
from edgecnn import converters
from test_explain import explain_lines_up
from test_models import USER

ALL_FORMATS = ("--formats", ",".join(converters.FORMATS), "--precisions", ",".join(converters.PRECISIONS))
N_ARTIFACTS = sum(len(converters.converter(f).PRECISIONS) for f in converters.FORMATS)  # each of each format


def _validate_all(arts, framework_rows=N_ARTIFACTS):
    r = edgecnn("validate", arts, *FAST_BENCH, "--json")
    assert r.code == 0, r
    rows = r.json["results"]
    assert len(rows) == framework_rows and all(x["status"] == "pass" for x in rows), r
    for x in rows:
        if x["precision"] == "fp32":
            assert x["agreement"] == 1.0 and x["max_abs_diff"] <= 1e-4, x
    return rows


@pytest.mark.parametrize("framework", ["torch", "tf", "numpy"])
def test_a_user_architecture_on_rgb_images_in_every_framework_and_format(framework, rgb_digits, tmp_path):
    """BN, a depthwise conv, a residual add and GAP, from a .toml file: trains on 32x32x3
    images in each framework; exports to every format and precision; every artifact passes."""
    arch = tmp_path / "mine.toml"
    arch.write_text(USER)
    run = tmp_path / "run"
    r = edgecnn("train", "--framework", framework, "--model", arch, "--dataset", f"folder:{rgb_digits}",
                "--epochs", "30", "--batch-size", "16", "--out", run, "--json")
    assert r.code == 0, r
    spec = json.loads((run / "spec.json").read_text())
    assert spec["arch"] == "custom" and spec["input_shape"] == [32, 32, 3] and spec["source"] == "mine.toml"
    assert r.json["macs"] == spec["macs"] > 0 and r.json["test_accuracy"] > 0.6  # chance is 1/3
    arch.unlink()  # the run folder holds the graph: export needs nothing else
    arts = tmp_path / "arts"
    r = edgecnn("export", run, *ALL_FORMATS, "--out", arts)
    assert r.code == 0, r
    manifest = json.loads((arts / "manifest.json").read_text())
    assert manifest["model"]["macs"] == spec["macs"]
    assert all(b["max_abs_diff"] <= 1e-4 for b in manifest["bridge"])
    _validate_all(arts)


@pytest.mark.parametrize("arch,framework", [("mobilenet", "torch")])
def test_zoo_models_export_to_every_format_and_pass(arch, framework, tmp_path):
    """mobilenet from PyTorch: its int8 ReLU6 is the qnnpack trap, and its fp32 .ptl is
    frozen. A Keras run of the same ops (BN, depthwise, stride 2, add, GAP) goes through
    every format in the user-architecture test above; test_models.py checks every zoo
    model's twins through the bridge."""
    run, arts = tmp_path / "run", tmp_path / "arts"
    r = edgecnn("train", "--framework", framework, "--model", arch, "--epochs", "12", "--out", run, "--json")
    assert r.code == 0, r
    r = edgecnn("export", run, *ALL_FORMATS, "--out", arts)
    assert r.code == 0, r
    ptl = next(a for a in json.loads((arts / "manifest.json").read_text())["artifacts"]
               if a["format"] == "ptl" and a["precision"] == "fp32")
    assert ptl["notes"]["frozen"] is True
    _validate_all(arts)
    explain_lines_up(arts, must_show=["stem_relu6", "b1_1_add", "head_relu6", "pool", "fc"])


def test_numpy_resnet_learns_digits_and_exports(tmp_path):
    run, arts = tmp_path / "run", tmp_path / "arts"
    r = edgecnn("train", "--framework", "numpy", "--model", "resnet", "--out", run, "--json")
    assert r.code == 0, r
    assert r.json["test_accuracy"] >= 0.95, r.json
    r = edgecnn("export", run, "--formats", "numpy,onnx,tflite", "--int8", "--out", arts)
    assert r.code == 0, r
    _validate_all(arts, 5)
    # its residual adds end in a relu, which ONNX Runtime's int8 folds into the add
    spec = json.loads((run / "spec.json").read_text())
    ops = {n["name"]: n["op"] for n in spec["graph"]}
    after_add = [n["name"] for n in spec["graph"] if n["op"] == "relu" and ops.get(n["inputs"][0]) == "add"]
    assert after_add
    explain_lines_up(arts, must_show=after_add)


def test_frozen_fp32_ptl_has_no_batchnorm(tmp_path):
    """Freezing folds BN into the convolutions: the file runs no aten::batch_norm."""
    from edgecnn.runtime import sandbox
    run, arts = tmp_path / "run", tmp_path / "arts"
    assert edgecnn("train", "--model", "resnet", "--epochs", "1", "--out", run).code == 0
    assert edgecnn("export", run, "--formats", "ptl", "--out", arts).code == 0
    ops = sandbox.describe("ptl", arts / "model.fp32.ptl")["operators"]
    assert ops and not any("batch_norm" in op for op in ops), ops


def test_model_options_are_checked_before_training(tmp_path):
    from conftest import assert_bad_input
    assert_bad_input(edgecnn("train", "--model", "vgg"), "unknown model 'vgg'", "mobilenet")
    assert_bad_input(edgecnn("train", "--model", "resnet", "--width", "0.5"), "--width scales the mobilenet")
    assert_bad_input(edgecnn("train", "--model", tmp_path / "none.toml"), "no such architecture file")
    bad = tmp_path / "bad.toml"
    bad.write_text(USER.replace('op = "relu6"', 'op = "gelu"'))
    assert_bad_input(edgecnn("train", "--model", bad, "--out", tmp_path / "r"), "layer 'dw_relu'", "unknown op 'gelu'")
    assert not (tmp_path / "r").exists()
