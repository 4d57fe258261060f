"""`edgecnn import`: a Keras model built and trained here in plain Keras (not with
edgecnn) becomes a run folder of edgecnn's graph, and every format is made from it
through the weight bridge; what cannot be imported is one line and exit 2."""
import json

import numpy as np
import pytest
from scipy.special import softmax

from conftest import FAST_BENCH, assert_bad_input, edgecnn

from edgecnn.runtime import runner_for


@pytest.fixture(scope="module")
def split(rgb_digits):
    from edgecnn.toolchain import data
    return data.load(f"folder:{rgb_digits}")


def _mobile_block_model(keras, layers):
    """BN, ReLU6, a depthwise conv, a residual add, GAP and a softmax, as a user writes
    them: the stride-2 stem is Keras's "same" (one more row below than above)."""
    x = keras.Input((32, 32, 3))
    y = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU(6.0)(y)
    z = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
    z = layers.BatchNormalization()(z)
    z = layers.ReLU(6.0)(z)
    z = layers.Conv2D(8, 1, use_bias=False)(z)
    z = layers.BatchNormalization()(z)
    y = layers.Add()([y, z])
    y = layers.ZeroPadding2D(((1, 0), (1, 0)))(y)
    y = layers.Conv2D(16, 3, strides=2, activation="relu")(y)
    y = layers.GlobalAveragePooling2D()(y)
    y = layers.Dropout(0.2)(y)
    return keras.Model(x, layers.Dense(3, activation="softmax")(y))


@pytest.fixture(scope="module")
def keras_file(split, tmp_path_factory):
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    model = _mobile_block_model(keras, layers)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(split.x_train.astype(np.float32) / 255, split.y_train, epochs=30, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("keras-model") / "mine.keras"
    model.save(path)
    probs = model.predict(split.x_test.astype(np.float32) / 255, verbose=0)
    return path, probs


def test_a_keras_model_imports_and_exports_to_every_format(keras_file, split, rgb_digits, tmp_path):
    path, probs = keras_file
    run = tmp_path / "run"
    r = edgecnn("import", path, "--dataset", f"folder:{rgb_digits}", "--out", run, "--json")
    assert r.code == 0, r
    assert r.json["final_softmax_dropped"] is True and r.json["max_abs_diff"] <= 1e-4, r.json
    accuracy = float((probs.argmax(1) == split.y_test).mean())
    assert r.json["test_accuracy"] == pytest.approx(accuracy), r.json
    spec = json.loads((run / "spec.json").read_text())
    ops = [n["op"] for n in spec["graph"]]
    assert ops.count("batchnorm") == 3 and "add" in ops and "gap" in ops, ops
    assert any(n["op"] == "conv2d" and n["groups"] == 8 for n in spec["graph"])  # the depthwise conv
    pads = [(n["top"], n["bottom"], n["left"], n["right"]) for n in spec["graph"] if n["op"] == "pad"]
    assert pads == [(0, 1, 0, 1), (1, 0, 1, 0)], pads  # Keras's "same" at stride 2, and the ZeroPadding2D

    arts = tmp_path / "arts"
    r = edgecnn("export", run, "--int8", "--formats", "tflite,ptl,onnx,numpy", "--out", arts)
    assert r.code == 0, r
    manifest = json.loads((arts / "manifest.json").read_text())
    assert len(manifest["artifacts"]) == 7
    x = split.x_test.astype(np.float32) / 255
    for a in manifest["artifacts"]:
        if a["precision"] == "fp32":  # each fp32 artifact against the user's Keras model itself
            logits = runner_for(a["format"], arts / a["file"]).load().infer(x)
            assert np.abs(softmax(logits, axis=1) - probs).max() <= 1e-4, a["file"]
    r = edgecnn("validate", arts, *FAST_BENCH, "--json")
    assert r.code == 0, r
    assert [row["status"] for row in r.json["results"]] == ["pass"] * 7


def test_class_names_from_the_user(keras_file, rgb_digits, tmp_path):
    path, _ = keras_file
    r = edgecnn("import", path, "--dataset", f"folder:{rgb_digits}", "--classes", "zero,one,two",
                "--out", tmp_path / "run")
    assert r.code == 0, r
    assert json.loads((tmp_path / "run" / "spec.json").read_text())["classes"] == ["zero", "one", "two"]


def _saved(tmp_path, build):
    import keras
    from keras import layers
    path = tmp_path / "bad.keras"
    build(keras, layers).save(path)
    return path


def _refused(tmp_path, model, *fragments, **kwargs):
    """import_model itself, in this process (the CLI's one line is the BadInput's text;
    the CLI is checked on the first cases): BadInput naming the problem, nothing written."""
    from edgecnn.toolchain.errors import BadInput
    from edgecnn.toolchain.import_model import import_model
    with pytest.raises(BadInput) as e:
        import_model(model, kwargs.pop("dataset"), tmp_path / "run", **kwargs)
    for f in fragments:
        assert f.lower() in str(e.value).lower(), (f, str(e.value))
    assert not (tmp_path / "run").exists()


def test_bad_models_are_refused(keras_file, rgb_digits, tmp_path):
    path, _ = keras_file
    folder = f"folder:{rgb_digits}"
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(path.read_bytes()[:2000])
    assert_bad_input(edgecnn("import", truncated, "--dataset", folder, "--out", tmp_path / "a"),
                     "truncated.keras", "cannot load the model")
    lam = _saved(tmp_path, lambda keras, layers: keras.Sequential(
        [keras.Input((32, 32, 3)), layers.Lambda(lambda t: t * 2.0), layers.Flatten(), layers.Dense(3)]))
    assert_bad_input(edgecnn("import", lam, "--dataset", folder, "--out", tmp_path / "b"), "Lambda", "safe mode")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    lstm = _saved(tmp_path, lambda keras, layers: keras.Sequential(
        [keras.Input((32, 32, 3)), layers.Reshape((32, 96)), layers.LSTM(4), layers.Dense(3)]))
    _refused(tmp_path, lstm, "is a Reshape, which is not in edgecnn's graph", dataset=folder)
    dilated = _saved(tmp_path, lambda keras, layers: keras.Sequential(
        [keras.Input((32, 32, 3)), layers.Conv2D(4, 3, dilation_rate=2, name="stem"),
         layers.GlobalAveragePooling2D(), layers.Dense(3)]))
    _refused(tmp_path, dilated, "'stem'", "dilated", dataset=folder)
    _refused(tmp_path, path, "takes 32x32x3 images", "8x8x1", dataset="digits")
    _refused(tmp_path, path, "3 values, not one logit per class", "(2)", dataset=folder, classes="a,b")
    _refused(tmp_path, tmp_path / "nope.keras", "no such model file", dataset=folder)
    _refused(tmp_path, tmp_path / "model.pt2", "not supported yet", dataset=folder)
    _refused(tmp_path, path, "--weights goes with a module:factory", dataset=folder, weights=path)


def test_a_model_trained_on_normalised_images(split, rgb_digits, tmp_path):
    """Trained on (x / 255 - mean) / std: the TOML beside the file declares it, and the
    import, the artifacts and validate all feed the model what it was trained on."""
    import keras
    from keras import layers
    mean, std = np.array([0.2, 0.3, 0.4]), np.array([0.25, 0.25, 0.3])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), layers.Conv2D(8, 3, strides=2, padding="same",
                                                                      activation="relu"),
                              layers.GlobalAveragePooling2D(), layers.Dense(3)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit((split.x_train / 255 - mean) / std, split.y_train, epochs=40, batch_size=16, verbose=0)
    path = tmp_path / "norm.keras"
    model.save(path)
    (tmp_path / "norm.keras.toml").write_text("mean = [0.2, 0.3, 0.4]\nstd = [0.25, 0.25, 0.3]\n")
    accuracy = float((model.predict((split.x_test / 255 - mean) / std, verbose=0).argmax(1) == split.y_test).mean())

    r = edgecnn("import", path, "--dataset", f"folder:{rgb_digits}", "--out", tmp_path / "run", "--json")
    assert r.code == 0, r
    assert r.json["test_accuracy"] == pytest.approx(accuracy) and r.json["final_softmax_dropped"] is False
    assert json.loads((tmp_path / "run" / "spec.json").read_text())["scaling"]["std"] == [0.25, 0.25, 0.3]
    r = edgecnn("export", tmp_path / "run", "--formats", "tflite,onnx", "--out", tmp_path / "arts")
    assert r.code == 0, r
    r = edgecnn("validate", tmp_path / "arts", *FAST_BENCH, "--json")
    assert r.code == 0, r
    fp32 = [row for row in r.json["results"] if row["precision"] == "fp32"]
    assert [row["accuracy"] for row in fp32] == [pytest.approx(accuracy)] * 2, fp32
    # a std of the wrong length is refused before anything loads
    assert_bad_input(edgecnn("import", path, "--dataset", f"folder:{rgb_digits}", "--std", "1,2",
                             "--out", tmp_path / "bad"), "std has 2 values", "3 channels")


USER_NET = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.pw = nn.Conv2d(c, c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return x + self.bn2(self.pw(F.relu6(self.bn1(self.dw(x)))))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.block = Block(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.pool(self.block(F.relu6(self.bn(self.stem(x)))))
        return self.fc(x.view(x.size(0), -1))


def make():
    return Net()


def not_a_module():
    return "a string"


def lstm():
    return nn.Sequential(nn.Flatten(), nn.Linear(3072, 8), nn.GELU(), nn.Linear(8, 3))
'''


@pytest.fixture(scope="module")
def torch_entry(split, tmp_path_factory):
    """The module above in a folder of its own, trained briefly in plain PyTorch; its
    weights saved with safetensors."""
    import importlib
    import sys

    import torch
    from safetensors.torch import save_file
    root = tmp_path_factory.mktemp("torch-entry")
    (root / "usernet.py").write_text(USER_NET)
    sys.path.insert(0, str(root))
    try:
        usernet = importlib.import_module("usernet")
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    model = usernet.make()
    x = torch.from_numpy((split.x_train / 255).astype(np.float32).transpose(0, 3, 1, 2))
    y = torch.from_numpy(split.y_train)
    opt = torch.optim.Adam(model.parameters(), 0.02)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "net.safetensors"))
    with torch.no_grad():
        logits = model(torch.from_numpy((split.x_test / 255).astype(np.float32).transpose(0, 3, 1, 2))).numpy()
    return root, logits


def test_a_pytorch_entry_point_imports_and_exports(torch_entry, split, rgb_digits, tmp_path):
    root, logits = torch_entry
    run = tmp_path / "run"
    r = edgecnn("import", "usernet:make", "--weights", "net.safetensors", "--dataset", f"folder:{rgb_digits}",
                "--out", run, "--json", cwd=root)
    assert r.code == 0, r
    assert r.json["framework"] == "torch" and r.json["max_abs_diff"] <= 1e-4, r.json
    accuracy = float((logits.argmax(1) == split.y_test).mean())
    assert r.json["test_accuracy"] == pytest.approx(accuracy) and accuracy > 0.6, r.json
    info = json.loads((run / "run.json").read_text())["imported"]
    assert info["entry_point"] == "usernet:make" and len(info["weights_sha256"]) == 64

    arts = tmp_path / "arts"
    r = edgecnn("export", run, "--int8", "--formats", "onnx,ptl", "--out", arts)
    assert r.code == 0, r
    x = split.x_test.astype(np.float32) / 255
    for fmt in ("onnx", "ptl"):  # fp32 against the user's module itself
        got = runner_for(fmt, arts / f"model.fp32.{fmt}").load().infer(x)
        assert np.abs(got - logits).max() <= 1e-4, fmt
    r = edgecnn("validate", arts, *FAST_BENCH, "--json")
    assert r.code == 0, r
    assert [row["status"] for row in r.json["results"]] == ["pass"] * 4


def test_bad_entry_points_are_refused(torch_entry, rgb_digits, tmp_path, monkeypatch):
    root, _ = torch_entry
    folder = f"folder:{rgb_digits}"
    r = edgecnn("import", "nosuchmodule:make", "--dataset", folder, "--out", tmp_path / "run", cwd=root)
    assert_bad_input(r, "cannot import nosuchmodule")
    r = edgecnn("import", "usernet:not_a_module", "--dataset", folder, "--out", tmp_path / "run", cwd=root)
    assert_bad_input(r, "returned a str, not a torch.nn.Module")
    monkeypatch.chdir(root)  # where a user's entry point is imported from
    _refused(tmp_path, "usernet:nosuch", "has no function nosuch", dataset=folder)
    _refused(tmp_path, "usernet:lstm", "GELU", "not in edgecnn's graph", dataset=folder)
    _refused(tmp_path, "usernet:make", "no such weights file", dataset=folder, weights="missing.safetensors")
    (root / "bad.safetensors").write_bytes(b"not safetensors")
    _refused(tmp_path, "usernet:make", "cannot load the weights", dataset=folder, weights="bad.safetensors")
