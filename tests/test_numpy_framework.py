"""The from-scratch NumPy framework (`--framework numpy`) and the NumPy runtime
(`--formats numpy`), as a user drives them: the seed's XOR networks, a NumPy-trained
CNN exported to every format through the weight bridge, PyTorch and Keras weights in the
NumPy runtime, and the bad inputs that come with a new file type."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FAST_BENCH, assert_bad_input, edgecnn

from edgecnn.runtime import ArtifactError, npnet, runner_for
from edgecnn.toolchain import data, train

SEED_NETS = {"2-4-1": "4", "2-4-4-1": "4,4"}


def softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("net", SEED_NETS)
def test_the_seed_xor_networks_learn_xor(net, tmp_path):
    """2-4-1 and 2-4-4-1, sigmoid layers, plain gradient descent as in the seed, seed 0:
    the one output unit is below 0.1 for the 0 cases and above 0.9 for the 1 cases, read
    back from the exported file by the NumPy runtime."""
    run, art = tmp_path / "run", tmp_path / "art"
    r = edgecnn("train", "--framework", "numpy", "--dataset", "xor", "--model", "mlp", "--hidden", SEED_NETS[net],
                "--activation", "sigmoid", "--optimizer", "sgd", "--lr", "1", "--seed", "0", "--out", run, "--json")
    assert r.code == 0, r
    assert r.json["test_accuracy"] == 1.0 and r.json["epochs"] == 10000
    spec = json.loads((run / "spec.json").read_text())
    assert spec["arch"] == "mlp" and spec["hidden"] == [int(u) for u in SEED_NETS[net].split(",")]
    assert spec["layers"][-2:] == ["dense(1)", "binary_logits"]  # one output unit, as in the seed
    assert r.json["params"] == {"2-4-1": 2 * 4 + 4 + 4 + 1, "2-4-4-1": 2 * 4 + 4 + 4 * 4 + 4 + 4 + 1}[net]

    assert edgecnn("export", run, "--formats", "numpy", "--out", art).code == 0
    xor = data.load("xor")
    x = xor.x_test.astype(np.float32) / 255
    assert x.reshape(4, 2).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    out = softmax(runner_for("numpy", art / "model.fp32.npz").infer(x))[:, 1]  # the sigmoid of the unit
    assert np.all(out[xor.y_test == 0] < 0.1) and np.all(out[xor.y_test == 1] > 0.9), out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_xor_is_not_one_lucky_seed(seed, tmp_path):
    xor = data.load("xor")
    x = xor.x_test.astype(np.float32) / 255
    for hidden in ((4,), (4, 4)):
        cfg = train.TrainConfig(framework="numpy", epochs=10000, batch_size=4, lr=1.0, seed=seed, threads=1,
                                shift=0, model="mlp", hidden=hidden, activation="sigmoid", optimizer="sgd")
        folder = tmp_path / f"mlp-{len(hidden)}"
        train.train("xor", cfg, folder, progress=False)
        out = softmax(npnet.load(folder / "model.npz").forward(x))[:, 1]
        assert np.all(out[xor.y_test == 0] < 0.1) and np.all(out[xor.y_test == 1] > 0.9), (hidden, out)


@pytest.fixture(scope="module")
def numpy_digits(tmp_path_factory):
    """A NumPy-trained cnn on digits, exported to every format and precision."""
    root = tmp_path_factory.mktemp("numpy-digits")
    r = edgecnn("train", "--framework", "numpy", "--out", root / "run", "--json")
    assert r.code == 0, r
    e = edgecnn("export", root / "run", "--formats", "tflite,ptl,onnx,numpy", "--int8", "--out", root / "art")
    assert e.code == 0, e
    return root, r.json


def test_a_numpy_trained_cnn_exports_to_every_format_and_validates(numpy_digits):
    root, trained = numpy_digits
    assert trained["model"] == "cnn" and trained["test_accuracy"] > 0.97
    run = json.loads((root / "run" / "run.json").read_text())
    assert run["framework"] == "numpy" and run["weights"] == "model.npz" and run["optimizer"] == "adam"
    manifest = json.loads((root / "art" / "manifest.json").read_text())
    assert manifest["model"]["source_framework"] == "numpy"
    proofs = {b["direction"]: b for b in manifest["bridge"]}
    assert set(proofs) == {"numpy -> keras", "numpy -> torch"}  # tflite from Keras; ptl, onnx from PyTorch
    assert all(b["max_abs_diff"] <= 1e-4 for b in proofs.values())
    assert {(a["format"], a["precision"]) for a in manifest["artifacts"] if a["status"] == "ok"} == {
        ("tflite", "fp32"), ("tflite", "int8"), ("ptl", "fp32"), ("ptl", "int8"), ("onnx", "fp32"),
        ("onnx", "int8"), ("numpy", "fp32")}
    r = edgecnn("validate", root / "art", "--json", *FAST_BENCH)  # every format the folder holds, numpy too
    assert r.code == 0, r
    rows = {(x["format"], x["precision"]): x for x in r.json["results"]}
    assert len(rows) == 7 and all(x["status"] == "pass" for x in rows.values())
    numpy_row = rows["numpy", "fp32"]
    assert numpy_row["runtime"] == "NumPy" and numpy_row["accuracy"] == pytest.approx(
        trained["test_accuracy"])
    assert numpy_row["max_abs_diff"] <= 1e-5  # the NumPy runtime runs the trained network itself


def test_the_numpy_runtime_runs_torch_and_keras_weights(digits_run, digits_tf_run, tmp_path):
    """`--formats numpy` from PyTorch and Keras runs: the NumPy twin comes through the
    bridge, and its logits match the source model's reference ones."""
    ds = data.load("digits")
    x = ds.x_test.astype(np.float32) / 255
    for run, source in ((digits_run, "torch"), (digits_tf_run, "keras")):
        out = tmp_path / source
        r = edgecnn("export", run, "--formats", "numpy", "--out", out)
        assert r.code == 0, r
        manifest = json.loads((out / "manifest.json").read_text())
        assert [b["direction"] for b in manifest["bridge"]] == [f"{source} -> numpy"]
        reference = np.load(out / "reference.npz")["logits"]
        logits = runner_for("numpy", out / "model.fp32.npz").infer(x)
        assert np.abs(logits - reference).max() <= 1e-4
        info = edgecnn("inspect", out / "model.fp32.npz", "--json")
        assert info.code == 0, info
        assert info.json["format"] == "numpy" and info.json["operators"] == {
            "conv2d": 2, "dense": 2, "flatten": 1, "maxpool": 2, "relu": 3}


def test_numpy_artifacts_run_on_an_emulated_pi(emulated_env, numpy_digits, tmp_path):
    """The NumPy runtime needs only numpy, which the emulated aarch64 Python has: its
    answers there match this machine's."""
    root, _ = numpy_digits
    r = edgecnn("validate", root / "art", "--formats", "numpy", "--target", "emulated:cortex-a72", "--json",
                *FAST_BENCH, env=emulated_env)
    assert r.code == 0, r
    row, = r.json["results"]
    assert row["status"] == "pass" and row["emulated"] and row["host_max_abs_diff"] <= 1e-4, row


def test_bad_input_for_the_numpy_framework_and_runtime(numpy_digits, digits_run, tmp_path):
    root, _ = numpy_digits
    assert_bad_input(edgecnn("train", "--model", "mlp", "--out", tmp_path / "r"), "trains only with --framework numpy")
    assert_bad_input(edgecnn("train", "--optimizer", "sgd", "--out", tmp_path / "r"), "only with --framework numpy")
    assert_bad_input(edgecnn("train", "--framework", "numpy", "--model", "mlp", "--hidden", "4,x",
                             "--out", tmp_path / "r"), "--hidden takes comma-separated whole numbers")
    assert_bad_input(edgecnn("train", "--framework", "numpy", "--model", "mlp", "--hidden", "0",
                             "--out", tmp_path / "r"), "hidden layers of 1 to")
    assert_bad_input(edgecnn("train", "--framework", "numpy", "--activation", "sigmoid", "--out", tmp_path / "r"),
                     "add --model mlp")
    assert not (tmp_path / "r").exists()
    assert_bad_input(edgecnn("export", root / "run", "--formats", "numpy", "--int8", "--out", tmp_path / "a"),
                     "precision 'int8' is not supported by numpy")

    # weights that are not the network spec.json describes
    run = tmp_path / "run"
    import shutil
    shutil.copytree(root / "run", run)
    xor = tmp_path / "xor"
    assert edgecnn("train", "--framework", "numpy", "--dataset", "xor", "--model", "mlp", "--hidden", "4",
                   "--epochs", "10", "--out", xor).code == 0
    shutil.copy(xor / "model.npz", run / "model.npz")
    assert_bad_input(edgecnn("export", run, "--formats", "numpy", "--out", tmp_path / "a"),
                     "model.npz", "not the cnn that spec.json describes")
    assert_bad_input(edgecnn("export", xor, "--formats", "onnx,numpy", "--out", tmp_path / "a"),
                     "exports to numpy, not onnx")

    # a truncated artifact, a pickle, and the wrong input shape
    art = root / "art" / "model.fp32.npz"
    bad = tmp_path / "model.fp32.npz"
    bad.write_bytes(art.read_bytes()[:5000])
    assert_bad_input(edgecnn("inspect", bad), "model.fp32.npz")
    with open(bad, "wb") as f:
        np.savez(f, __model__=np.array([{"a": 1}], dtype=object))  # a pickle inside
    assert_bad_input(edgecnn("inspect", bad), "allow_pickle=False")
    runner = runner_for("numpy", art)
    with pytest.raises(ArtifactError, match="takes 8x8x1 inputs, got 28x28x1"):
        runner.infer(np.zeros((1, 28, 28, 1), np.float32))


@pytest.fixture(scope="module")
def numpy_mnist(shared_data, tmp_path_factory):
    """A NumPy-trained cnn on MNIST: one epoch (about 45 s here; three reach 99.2 %),
    exported as the NumPy file and as fp32 TFLite."""
    root = tmp_path_factory.mktemp("numpy-mnist")
    r = edgecnn("train", "--framework", "numpy", "--dataset", "mnist", "--data-dir", shared_data, "--epochs", "1",
                "--out", root / "run", "--json")
    assert r.code == 0, r
    e = edgecnn("export", root / "run", "--formats", "tflite,numpy", "--out", root / "art")
    assert e.code == 0, e
    return root, r.json


def test_numpy_trained_mnist_cnn_and_its_runtime_agree_with_tflite(numpy_mnist, shared_data):
    root, trained = numpy_mnist
    assert trained["test_accuracy"] >= 0.985, trained
    ds = data.load("mnist", shared_data)
    x = ds.x_test.astype(np.float32) / 255
    numpy_rt = runner_for("numpy", root / "art" / "model.fp32.npz")
    tflite = runner_for("tflite", root / "art" / "model.fp32.tflite")
    a = np.concatenate([numpy_rt.infer(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    b = np.concatenate([tflite.infer(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    assert len(a) == 10_000 and np.abs(a - b).max() <= 1e-4, np.abs(a - b).max()
    assert (a.argmax(1) == ds.y_test).mean() == pytest.approx(trained["test_accuracy"])
