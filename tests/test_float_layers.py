"""`export --int8 --float-layers`: named layers stay float in every int8 format, the
rest is int8, and the manifest and the table say which."""
import json

import onnx
import pytest

from conftest import FAST_BENCH, assert_bad_input, edgecnn


def _float_convs_onnx(path) -> list[str]:
    """Conv nodes whose weights are a plain initializer (not a DequantizeLinear output)."""
    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}
    return [n.name for n in m.graph.node if n.op_type == "Conv" and n.input[1] in inits]


def test_a_float_layer_in_every_int8_format(digits_run, tmp_path):
    out = tmp_path / "arts"
    r = edgecnn("export", digits_run, "--precisions", "int8", "--formats", "tflite,ptl,onnx",
                "--float-layers", "conv1", "--out", out)
    assert r.code == 0, r
    assert r.out.count("ok, float: conv1") == 3, r
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["notes"]["float_layers"] for a in manifest["artifacts"]] == [["conv1"]] * 3

    ops = {f: edgecnn("inspect", out / f"model.int8.{f}", "--json").json["operators"] for f in ("tflite", "ptl")}
    # TFLite: int8 in and out, one DEQUANTIZE before the float conv and one QUANTIZE after it
    assert ops["tflite"]["DEQUANTIZE"] == 1 and ops["tflite"]["QUANTIZE"] == 1, ops
    # .ptl: one float convolution, the other quantized; the image is not quantized first
    assert ops["ptl"]["aten::_convolution"] == 1 and ops["ptl"]["quantized::conv2d_relu"] == 1, ops
    assert len(_float_convs_onnx(out / "model.int8.onnx")) == 1

    r = edgecnn("validate", out, "--json", *FAST_BENCH)
    assert r.code == 0, r
    assert all(row["status"] == "pass" for row in r.json["results"]), r.json


def test_without_float_layers_every_conv_is_int8(digits_artifacts):
    assert _float_convs_onnx(digits_artifacts / "model.int8.onnx") == []
    ops = edgecnn("inspect", digits_artifacts / "model.int8.tflite", "--json").json["operators"]
    assert "DEQUANTIZE" not in ops


def test_a_float_layer_of_a_keras_run(digits_tf_run, tmp_path):
    out = tmp_path / "arts"
    r = edgecnn("export", digits_tf_run, "--precisions", "int8", "--formats", "tflite",
                "--float-layers", "fc1", "--out", out)
    assert r.code == 0, r
    ops = edgecnn("inspect", out / "model.int8.tflite", "--json").json["operators"]
    assert ops["DEQUANTIZE"] == 1 and ops["QUANTIZE"] == 1, ops


@pytest.mark.parametrize("args, fragments", [
    (("--int8", "--float-layers", "relu1"), ("'relu1' is not a conv2d or dense layer", "conv1, conv2, fc1, fc2")),
    (("--int8", "--float-layers", "nope"), ("'nope'",)),
    (("--float-layers", "conv1"), ("add --int8",)),
])
def test_bad_float_layers(digits_run, tmp_path, args, fragments):
    r = edgecnn("export", digits_run, "--formats", "onnx", *args, "--out", tmp_path / "arts")
    assert_bad_input(r, *fragments)
    assert not (tmp_path / "arts").exists()
