"""`edgecnn predict` and `edgecnn.runtime.load(path).predict(images)`: the answers an
artifact gives on image files are the ones validate scored, in every format."""
import json
import math

import numpy as np
import pytest
from conftest import assert_bad_input, edgecnn

from edgecnn.runtime import load
from edgecnn.toolchain import data

N = 12


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory):
    """The first test images of digits as PNG files, and the reference's logits for them."""
    from PIL import Image
    folder = tmp_path_factory.mktemp("pngs")
    ds = data.load("digits")
    paths = []
    for i in range(N):
        paths.append(folder / f"{i:02d}.png")
        Image.fromarray(ds.x_test[i, :, :, 0]).save(paths[-1])
    return folder, paths, ds.x_test[:N]


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("name", ["model.fp32.tflite", "model.int8.tflite", "model.fp32.onnx", "model.int8.onnx",
                                  "model.fp32.ptl", "model.int8.ptl"])
def test_predict_gives_the_artifacts_answers(digits_artifacts, digit_pngs, name):
    folder, paths, x = digit_pngs
    path = digits_artifacts / name
    r = edgecnn("predict", path, folder, "--top-k", "10", "--json")
    assert r.code == 0, r
    got = r.json["predictions"]
    assert [p["image"] for p in got] == [str(p) for p in paths]
    probs = np.array([[t["probability"] for t in sorted(p["top"], key=lambda t: int(t["class"]))] for p in got])
    model = load(path)  # the Python API on the same pixels
    assert np.allclose(probs, model.probabilities(x), atol=2e-6)
    assert [[c for c, _ in t] for t in model.predict(x, top_k=10)] == [[t["class"] for t in p["top"]] for p in got]
    if "fp32" in name:  # the trained model's own answers, through the file's runtime
        reference = np.load(digits_artifacts / "reference.npz")["logits"][:N]
        assert np.abs(probs - _softmax(reference.astype(np.float64))).max() < 1e-4
    assert all(math.isclose(sum(t["probability"] for t in p["top"]), 1, abs_tol=1e-4) for p in got)


def test_predict_text_and_the_python_api(digits_artifacts, digit_pngs):
    folder, paths, x = digit_pngs
    r = edgecnn("predict", digits_artifacts / "model.int8.tflite", paths[0], paths[1])
    assert r.code == 0, r
    lines = r.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{paths[0]}: ") and lines[0].count("%") == 3
    model = load(digits_artifacts / "model.int8.tflite")
    assert model.classes == [str(i) for i in range(10)]
    one = model.predict(x[0, :, :, 0], top_k=3)  # one grey HW image
    assert len(one) == 1 and len(one[0]) == 3 and one[0][0][0] == lines[0].split(": ")[1].split()[0]


def test_images_of_another_size_are_refused_or_resized(digits_artifacts, digit_pngs, tmp_path):
    from PIL import Image
    _, paths, _ = digit_pngs
    big = tmp_path / "big.png"
    Image.open(paths[0]).resize((16, 16), Image.Resampling.NEAREST).save(big)
    art = digits_artifacts / "model.fp32.onnx"
    assert_bad_input(edgecnn("predict", art, big), "16x16", "the model takes 8x8", "--resize 8x8")
    r = edgecnn("predict", art, big, "--resize", "8x8", "--json")
    assert r.code == 0, r
    small = edgecnn("predict", art, paths[0], "--json").json["predictions"][0]["top"][0]["class"]
    assert r.json["predictions"][0]["top"][0]["class"] == small  # nearest x2 then bilinear /2 is close
    assert_bad_input(edgecnn("predict", art, big, "--resize", "8by8"), "--resize", "HEIGHTxWIDTH")


def test_bad_input(digits_artifacts, digit_pngs, tmp_path):
    _, paths, _ = digit_pngs
    (tmp_path / "junk.png").write_bytes(b"not a png")
    assert_bad_input(edgecnn("predict", digits_artifacts / "model.fp32.onnx", tmp_path / "junk.png"),
                     "cannot read image", "junk.png")
    assert_bad_input(edgecnn("predict", digits_artifacts / "model.fp32.onnx", tmp_path / "none.png"),
                     "no such file or folder")
    assert_bad_input(edgecnn("predict", digits_artifacts, paths[0]), "artifact folder", "edgecnn predict")
    assert_bad_input(edgecnn("predict", digits_artifacts / "model.fp32.onnx", paths[0], "--top-k", "0"), "--top-k")
    copy = tmp_path / "art"
    copy.mkdir()
    for f in ("manifest.json", "model.fp32.onnx"):
        (copy / f).write_bytes((digits_artifacts / f).read_bytes())
    with open(copy / "model.fp32.onnx", "r+b") as f:
        f.seek(200)
        f.write(b"\x00")
    assert_bad_input(edgecnn("predict", copy / "model.fp32.onnx", paths[0]), "sha256", "does not match")


def test_a_file_made_elsewhere_takes_classes_and_scaling(digits_artifacts, digit_pngs, tmp_path):
    folder, _, x = digit_pngs
    lone = tmp_path / "mine.onnx"
    lone.write_bytes((digits_artifacts / "model.fp32.onnx").read_bytes())
    names = "zero,one,two,three,four,five,six,seven,eight,nine"
    r = edgecnn("predict", lone, folder, "--classes", names, "--json")
    assert r.code == 0, r
    assert r.json["classes_from"] == "--classes"
    ours = edgecnn("predict", digits_artifacts / "model.fp32.onnx", folder, "--json").json
    to_name = names.split(",")
    assert [p["top"][0]["class"] for p in r.json["predictions"]] == [
        to_name[int(p["top"][0]["class"])] for p in ours["predictions"]]


def test_predict_on_an_emulated_pi(emulated_env, digits_artifacts, digit_pngs):
    folder, _, _ = digit_pngs
    art = digits_artifacts / "model.int8.tflite"
    here = edgecnn("predict", art, folder, "--json", "--top-k", "10").json
    r = edgecnn("predict", art, folder, "--json", "--top-k", "10", "--target", "emulated:cortex-a76",
                env=emulated_env)
    assert r.code == 0, r
    assert r.json["target"] == "emulated:cortex-a76"
    assert json.dumps(r.json["predictions"]) == json.dumps(here["predictions"])  # int8: the same integers
    # and the Pi 5's latency for one of these images, estimated from its counted instructions
    at = r.json["pi_estimate"]["boards"]["pi5"]["clocks"]["2.4"]
    assert at["ms"] >= at["lower_bound_ms"] > 0 and at["band_ms"][0] < at["ms"] < at["band_ms"][1], at
    from edgecnn.toolchain.predict import render
    assert "est. Pi 5 ms at 2.4 GHz: " in render(r.json) and "lower bound" in render(r.json), render(r.json)
    # asked not to count, the board answers the same and estimates nothing
    off = edgecnn("predict", art, folder, "--json", "--top-k", "10", "--target", "emulated:cortex-a76",
                  "--no-pi-estimates", env=emulated_env)
    assert off.code == 0 and off.json["predictions"] == r.json["predictions"], off
    assert not {"pi_estimate", "pi_count", "pi_estimate_skipped"} & set(off.json), off.json
    assert "est. Pi" not in render(off.json) and "Pi latency" not in render(off.json)


def test_predict_imports_only_its_runtime(digits_artifacts, digit_pngs):
    """What makes it quick to start: no TensorFlow, torch or ONNX Runtime for a .tflite."""
    import subprocess
    import sys
    _, paths, _ = digit_pngs
    code = ("import sys\nfrom edgecnn.toolchain.cli import main\n"
            "try:\n    main(['predict', sys.argv[1], sys.argv[2]])\nexcept SystemExit as e:\n    assert not e.code\n"
            "print('HEAVY', [m for m in ('tensorflow', 'torch', 'keras', 'onnxruntime', 'onnx') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code, str(digits_artifacts / "model.int8.tflite"), str(paths[0])],
                       capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_broken_file_made_elsewhere_is_one_line(digits_artifacts, digit_pngs, tmp_path, damage):
    _, paths, _ = digit_pngs
    good = (digits_artifacts / "model.fp32.onnx").read_bytes()
    lone = tmp_path / "mine.onnx"  # no manifest beside it: opened in a child process first
    lone.write_bytes(good[:3000] if damage == "truncated" else np.random.default_rng(0).bytes(50_000))
    assert_bad_input(edgecnn("predict", lone, paths[0]), "mine.onnx", "cannot load it")
