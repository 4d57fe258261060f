"""`edgecnn explain`: each layer of each int8 artifact against the fp32 model at the same
graph layer. One layer's quantization is damaged on purpose (its output scale made 64x
coarser, read the same way by the next layer), in TFLite and in ONNX, and explain must
name that layer. And a model one of whose layers cannot be quantized well: explain must
name it as the layer that costs the most accuracy when it alone is quantized, in every
format, .ptl included."""
import ast
import hashlib
import json
import shutil

import numpy as np
import pytest

from conftest import assert_bad_input, edgecnn

DAMAGED = "fc1"  # its folded chain ends at relu3: the tensor the runtimes hold


def _rehash(folder, name):
    m = json.loads((folder / "manifest.json").read_text())
    entry = next(a for a in m["artifacts"] if a["file"] == name)
    data = (folder / name).read_bytes()
    entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (folder / "manifest.json").write_text(json.dumps(m))


def _damage_tflite(path):
    from tensorflow.lite.tools import flatbuffer_utils as fb
    model = fb.read_model(str(path))
    hits = 0
    for t in model.subgraphs[0].tensors:
        name = t.name.decode() if isinstance(t.name, bytes) else t.name
        if f"/{DAMAGED}_1/MatMul" in name and len(t.quantization.scale) == 1:  # its output, not weights or bias
            t.quantization.scale = list(np.asarray(t.quantization.scale) * 64)
            hits += 1
    assert hits == 1
    fb.write_model(model, str(path))


def _damage_onnx(path):
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(path))
    layer = next(n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and any(
        p.key == "pkg.torch.onnx.name_scopes" and DAMAGED in ast.literal_eval(p.value) for p in n.metadata_props))
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == layer.output[0])
    init = next(i for i in model.graph.initializer if i.name == q.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 64, init.name))
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def damaged(digits_artifacts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged") / "arts"
    shutil.copytree(digits_artifacts, folder)
    _damage_tflite(folder / "model.int8.tflite")
    _damage_onnx(folder / "model.int8.onnx")
    for name in ("model.int8.tflite", "model.int8.onnx"):
        _rehash(folder, name)
    return folder


def test_explain_names_the_damaged_layer_in_tflite_and_onnx(damaged):
    r = edgecnn("explain", damaged, "--samples", "128", "--json", "--no-alone")
    assert r.code == 0, r
    assert "alone" not in r.json, r.json
    rows = {a["format"]: a for a in r.json["artifacts"]}
    for fmt in ("tflite", "onnx"):
        assert rows[fmt]["jump"]["layer"] == "relu3", rows[fmt]
        by = {lay["layer"]: lay for lay in rows[fmt]["layers"]}
        assert by["pool2"]["sqnr_db"] > 30 > by["relu3"]["sqnr_db"], by  # before it, still clean
    assert rows["ptl"]["exposed"] is False and "exposes no intermediate" in rows["ptl"]["reason"]
    r = edgecnn("explain", damaged, "--samples", "128", "--no-alone")
    assert "tflite: the error jumps at relu3" in r.out and "onnx: the error jumps at relu3" in r.out, r.out


def test_clean_int8_has_no_jump_and_every_layer_close(digits_artifacts):
    r = edgecnn("explain", digits_artifacts, "--samples", "128", "--json", "--no-alone")
    assert r.code == 0, r
    assert {a["format"] for a in r.json["artifacts"] if a["exposed"]} == {"tflite", "onnx"}, r.json
    for a in r.json["artifacts"]:
        if a["exposed"]:
            assert a["jump"] is None and len(a["layers"]) >= 6, a
            assert all(lay["sqnr_db"] > 25 and lay["cosine"] > 0.99 for lay in a["layers"]), a


OUTLIER = "conv2"


@pytest.fixture(scope="module")
def outlier_run(digits_run, tmp_path_factory):
    """The digits CNN with conv1's channel 0 silenced (zero weights, a negative bias: the
    ReLU after it always gives 0) and conv2 reading that channel with weights 1000 times
    its largest. The fp32 network ignores them (they multiply zeros), but they set the
    range every int8 scale of conv2's weights must cover, per channel as per tensor, so
    its real weights round to zero: conv2 alone int8 loses the accuracy, the other layers
    alone lose next to none."""
    from safetensors.numpy import load_file, save_file
    run = tmp_path_factory.mktemp("outlier") / "run"
    shutil.copytree(digits_run, run)
    w = load_file(run / "model.safetensors")
    w["conv1.weight"][0], w["conv1.bias"][0] = 0.0, -1.0
    w[f"{OUTLIER}.weight"][:, 0] = 1000 * np.abs(w[f"{OUTLIER}.weight"]).max()
    save_file(w, run / "model.safetensors")
    return run


def test_the_layer_that_costs_most_when_quantized_alone_is_named_in_every_format(outlier_run, tmp_path):
    arts = tmp_path / "arts"
    assert edgecnn("export", outlier_run, "--precisions", "int8", "--out", arts).code == 0
    r = edgecnn("explain", arts, "--samples", "64", "--json")
    assert r.code == 0, r
    doc = r.json
    layers = ["conv1", "conv2", "fc1", "fc2"]
    alone = doc["alone"]
    assert alone["images"] == 360 and alone["reference_accuracy"] > 0.8, alone
    # the .ptl exposes no layers, but is made layer by layer like the others
    assert {a["format"] for a in alone["artifacts"]} == {"tflite", "onnx", "ptl"}
    for a in alone["artifacts"]:
        assert [x["layer"] for x in a["layers"]] == layers, a
        assert a["costliest"] == OUTLIER, a
        by = {x["layer"]: x for x in a["layers"]}
        assert by[OUTLIER]["drop"] > 30, (a["format"], by)  # its real weights are gone
        assert all(abs(by[n]["drop"]) < 5 for n in layers if n != OUTLIER), (a["format"], by)
    # and what the file itself shows: the error jumps at the end of conv2's folded chain
    rows = {a["format"]: a for a in doc["artifacts"]}
    assert rows["tflite"]["jump"]["layer"] == rows["onnx"]["jump"]["layer"] == "relu2", rows
    text = edgecnn("explain", arts, "--samples", "64").out
    for fmt in ("tflite", "onnx", "ptl"):
        assert f"{fmt}: alone int8, {OUTLIER} costs the most" in text, text
    assert "each layer alone int8, the others float" in text


def test_a_manifest_without_the_options_is_not_made_layer_by_layer(digits_artifacts, tmp_path):
    """What an older export wrote: no "options" in its entries. explain says so and
    still compares the layers."""
    folder = tmp_path / "old"
    shutil.copytree(digits_artifacts, folder)
    m = json.loads((folder / "manifest.json").read_text())
    for a in m["artifacts"]:
        a.pop("options", None)
    (folder / "manifest.json").write_text(json.dumps(m))
    r = edgecnn("explain", folder, "--samples", "32")
    assert r.code == 0, r
    assert "onnx: not made layer by layer: its manifest does not record the options" in r.out, r.out


def test_explain_refuses_a_folder_without_int8(digits_run, tmp_path):
    out = tmp_path / "fp32"
    assert edgecnn("export", digits_run, "--formats", "onnx", "--out", out).code == 0
    assert_bad_input(edgecnn("explain", out), "no int8 artifacts to explain", "--int8")
    assert_bad_input(edgecnn("explain", tmp_path / "nope"), "nope")



def explain_lines_up(arts, must_show=()):
    """explain on a zoo model's int8 artifacts (test_zoo.py calls it): every layer
    either format exposes is tied to the same graph layer, `must_show` among them, and a
    plain int8 export has no jump."""
    r = edgecnn("explain", arts, "--samples", "64", "--json", "--no-alone")
    assert r.code == 0, r
    layers = {a["format"]: [lay["layer"] for lay in a["layers"]] for a in r.json["artifacts"] if a["exposed"]}
    assert set(layers) == {"tflite", "onnx"} and layers["tflite"] == layers["onnx"], layers
    assert set(must_show) <= set(layers["onnx"]), layers
    assert all(a["jump"] is None for a in r.json["artifacts"] if a["exposed"]), r.json
