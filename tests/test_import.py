"""`edgecnn import`: a Keras model built and trained here in plain Keras (not with
edgecnn) becomes a run folder of edgecnn's graph, and every format is made from it
through the weight bridge. The same model with a layer outside the vocabulary, a .pt2
program and an .onnx file are kept in their own framework and export to what it can
make, with the rest listed and why. What cannot be imported is one line and exit 2."""
import json

import numpy as np
import pytest
from scipy.special import softmax

from conftest import FAST_BENCH, assert_bad_input, edgecnn

from edgecnn.runtime import runner_for
from edgecnn.runtime.quiet import quiet


@pytest.fixture(scope="module")
def split(rgb_digits):
    from edgecnn.toolchain import data
    return data.load(f"folder:{rgb_digits}")


def _mobile_block_model(keras, layers, gate=False):
    """BN, ReLU6, a depthwise conv, a residual add, GAP and a softmax, as a user writes
    them: the stride-2 stem is Keras's "same" (one more row below than above). `gate`
    adds a squeeze-and-excitation gate, whose Multiply is outside edgecnn's graph."""
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
    if gate:
        g = layers.Dense(16, activation="sigmoid")(layers.GlobalAveragePooling2D()(y))
        y = layers.Multiply(name="se_gate")([y, layers.Reshape((1, 1, 16), name="se_squeeze")(g)])
    y = layers.GlobalAveragePooling2D()(y)
    y = layers.Dropout(0.2)(y)
    return keras.Model(x, layers.Dense(3, activation="softmax")(y))


def _trained_keras(split, tmp_path_factory, gate):
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    model = _mobile_block_model(keras, layers, gate)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(split.x_train.astype(np.float32) / 255, split.y_train, epochs=30, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("keras-model") / "mine.keras"
    model.save(path)
    probs = model.predict(split.x_test.astype(np.float32) / 255, verbose=0)
    return path, probs


@pytest.fixture(scope="module")
def keras_file(split, tmp_path_factory):
    return _trained_keras(split, tmp_path_factory, gate=False)


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
    _refused(tmp_path, path, "takes 32x32x3 images", "8x8x1", dataset="digits")
    _refused(tmp_path, path, "3 values, not one logit per class", "(2)", dataset=folder, classes="a,b")
    _refused(tmp_path, tmp_path / "nope.keras", "no such model file", dataset=folder)
    _refused(tmp_path, tmp_path / "model.h5", ".h5 files are not supported", dataset=folder)
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


class Gated(Net):
    """Net with a squeeze-and-excitation gate: the product is outside edgecnn's graph."""
    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(8, 8)

    def forward(self, x):
        x = self.block(F.relu6(self.bn(self.stem(x))))
        x = x * torch.sigmoid(self.gate(x.mean((2, 3))))[:, :, None, None]
        return self.fc(self.pool(x).flatten(1))


def gated():
    return Gated()


def pairs():  # two numbers per class
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Unflatten(1, (3, 2)))
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
    _refused(tmp_path, "usernet:make", "no such weights file", dataset=folder, weights="missing.safetensors")
    (root / "bad.safetensors").write_bytes(b"not safetensors")
    _refused(tmp_path, "usernet:make", "cannot load the weights", dataset=folder, weights="bad.safetensors")


# -- models kept in their own framework ----------------------------------------------

def _export_table(arts):
    return {(a["format"], a["precision"]): a for a in json.loads((arts / "manifest.json").read_text())["artifacts"]}


def _made_and_validated(arts, want, x, made, unavailable, softmaxed=False):
    """The export made exactly `made` (format, precision) pairs and listed `unavailable`
    with a reason; each fp32 file answers as the user's model does (`want`) to 1e-4;
    validate passes every file that was made."""
    table = _export_table(arts)
    assert {k for k, a in table.items() if a["status"] == "ok"} == set(made), table
    assert {k for k, a in table.items() if a["status"] == "unavailable"} == set(unavailable), table
    assert all(len(a["reason"]) > 20 for a in table.values() if a["status"] == "unavailable")
    for (fmt, precision), a in table.items():
        if a["status"] == "ok" and precision == "fp32":
            got = runner_for(fmt, arts / a["file"]).load().infer(x)
            assert np.abs(got - want).max() <= 1e-4, a["file"]
    r = edgecnn("validate", arts, *FAST_BENCH, "--json")
    assert r.code == 0, r
    assert sorted((row["format"], row["precision"], row["status"]) for row in r.json["results"]) == \
        sorted((f, p, "pass") for f, p in made), r.json["results"]


def test_a_keras_layer_outside_the_vocabulary_still_exports_to_tflite_and_onnx(split, rgb_digits, tmp_path_factory,
                                                                               tmp_path):
    path, probs = _trained_keras(split, tmp_path_factory, gate=True)
    run = tmp_path / "run"
    r = edgecnn("import", path, "--dataset", f"folder:{rgb_digits}", "--out", run)
    assert r.code == 0, r
    assert "kept in its own framework" in r.out and "se_squeeze" in r.out, r.out
    info = json.loads((run / "run.json").read_text())
    assert info["imported"]["read_as"] == "its own framework" and (run / "model.keras").is_file()
    assert info["params"] > 0 and info["imported"]["proof"]["max_abs_diff"] == 0.0  # the file itself
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(float((probs.argmax(1) == split.y_test).mean()))

    arts = tmp_path / "arts"
    r = edgecnn("export", run, "--int8", "--formats", "tflite,ptl,onnx,numpy", "--out", arts)
    assert r.code == 0, r
    assert "unavailable: no Keras-to-PyTorch converter" in r.out, r.out  # the export table
    made = [("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")]
    _made_and_validated(arts, probs, split.x_test.astype(np.float32) / 255, made,
                        [("ptl", "fp32"), ("ptl", "int8"), ("numpy", "fp32")])
    manifest = json.loads((arts / "manifest.json").read_text())
    assert "se_squeeze" in manifest["model"]["outside_vocabulary"] and manifest["bridge"] == []
    assert_bad_input(edgecnn("validate", arts, "--formats", "ptl"), "ptl fp32 was never made", "Keras-to-PyTorch")
    assert_bad_input(edgecnn("export", run, "--formats", "ptl", "--out", tmp_path / "none"),
                     "none of the formats asked for can be made", "ptl fp32")
    assert_bad_input(edgecnn("export", run, "--int8", "--float-layers", "stem", "--out", tmp_path / "none"),
                     "--float-layers", "its own framework")


@pytest.fixture(scope="module")
def torch_program(torch_entry, tmp_path_factory):
    """The entry point's trained Net with a squeeze-and-excitation gate (random), its
    weights saved with safetensors for the entry point `usernet:gated`, and the module
    saved with torch.export.save: with a dynamic batch, and with a fixed one."""
    import importlib
    import sys

    import torch
    from safetensors.torch import load_file, save_file
    root, _ = torch_entry
    sys.path.insert(0, str(root))
    try:
        model = importlib.import_module("usernet").gated().eval()
    finally:
        sys.path.pop(0)
    model.load_state_dict(load_file(str(root / "net.safetensors")), strict=False)  # all but the gate
    torch.manual_seed(1)
    torch.nn.init.normal_(model.gate.weight)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "gated.safetensors"))
    x = torch.zeros(2, 3, 32, 32)
    path = tmp_path_factory.mktemp("program") / "gated.pt2"
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)),
                      str(path))
    static = path.with_name("static.pt2")
    torch.export.save(torch.export.export(model, (x,)), str(static))
    return root, model, path, static


def _torch_logits(model, split):
    import torch
    with torch.no_grad():
        return model(torch.from_numpy((split.x_test / 255).astype(np.float32).transpose(0, 3, 1, 2))).numpy()


@pytest.mark.parametrize("how", ["entry point", "pt2"])
def test_a_torch_model_outside_the_vocabulary_exports_to_onnx_and_ptl(torch_program, how, split, rgb_digits,
                                                                      tmp_path):
    root, model, program, _ = torch_program
    run = tmp_path / "run"
    model_args = (("usernet:gated", "--weights", "gated.safetensors") if how == "entry point" else (program,))
    r = edgecnn("import", *model_args, "--dataset", f"folder:{rgb_digits}", "--out", run, "--json", cwd=root)
    assert r.code == 0, r
    assert r.json["read_as"] == "its own framework" and r.json["max_abs_diff"] <= 1e-4, r.json
    assert ("getitem" in r.json["outside_vocabulary"]) if how == "entry point" else \
        "not read as edgecnn's graph" in r.json["outside_vocabulary"], r.json["outside_vocabulary"]
    assert (run / "model.pt2").is_file()
    arts = tmp_path / "arts"
    r = edgecnn("export", run, "--int8", "--formats", "onnx,ptl,tflite", "--out", arts)
    assert r.code == 0, r
    _made_and_validated(arts, _torch_logits(model, split), split.x_test.astype(np.float32) / 255,
                        [("onnx", "fp32"), ("onnx", "int8"), ("ptl", "fp32")],
                        [("ptl", "int8"), ("tflite", "fp32"), ("tflite", "int8")])


def test_an_onnx_file_exports_to_onnx_int8(torch_program, split, rgb_digits, tmp_path):
    import torch
    _, model, _, _ = torch_program
    path = tmp_path / "user.onnx"
    with quiet():  # torch's default: the weights in user.onnx.data beside it
        torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=True,
                          input_names=["pixels"], dynamic_shapes=({0: torch.export.Dim("n", min=1)},))
    assert path.with_name("user.onnx.data").is_file()
    run = tmp_path / "run"
    r = edgecnn("import", path, "--dataset", f"folder:{rgb_digits}", "--out", run, "--json")
    assert r.code == 0, r
    assert r.json["framework"] == "onnx" and r.json["params"] > 0, r.json
    arts = tmp_path / "arts"
    r = edgecnn("export", run, "--int8", "--out", arts)
    assert r.code == 0, r
    _made_and_validated(arts, _torch_logits(model, split), split.x_test.astype(np.float32) / 255,
                        [("onnx", "fp32"), ("onnx", "int8")],
                        [("ptl", "fp32"), ("ptl", "int8"), ("tflite", "fp32"), ("tflite", "int8")])
    assert "onnx2tf" in _export_table(arts)[("tflite", "fp32")]["reason"]


def _tampered(src, dest, how):
    """A copy of a .pt2 archive that holds a pickled Python object (its constants config
    names one), or a compiled library: what torch.export.load would unpickle or load."""
    import zipfile
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for item in zin.infolist():
            data = zin.read(item.filename)
            if how == "object" and item.filename.endswith("_constants_config.json"):
                data = json.dumps({"config": {"obj": {"path_name": "opaque_obj_0"}}}).encode()
            zout.writestr(item, data)
        if how == "object":
            zout.writestr(f"{root}/data/constants/opaque_obj_0", b"cos\nsystem\n(S'true'\ntR.")
        else:
            zout.writestr(f"{root}/data/aotinductor/model/model.so", b"\x7fELF")
    return dest


def test_bad_programs_and_onnx_files_are_refused(torch_program, rgb_digits, tmp_path, monkeypatch):
    import torch
    root, model, program, static = torch_program
    folder = f"folder:{rgb_digits}"
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(program.read_bytes()[:3000])
    assert_bad_input(edgecnn("import", truncated, "--dataset", folder, "--out", tmp_path / "a"),
                     "truncated.pt2", "cannot")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    assert_bad_input(edgecnn("import", broken, "--dataset", folder, "--out", tmp_path / "b"), "broken.onnx")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    _refused(tmp_path, static, "batch size is fixed at 2", dataset=folder)
    _refused(tmp_path, _tampered(program, tmp_path / "object.pt2", "object"), "Python objects", "pickle",
             dataset=folder)
    _refused(tmp_path, _tampered(program, tmp_path / "compiled.pt2", "compiled"), "compiled code", dataset=folder)
    _refused(tmp_path, program, "takes 32x32x3 images", "8x8x1", dataset="digits")
    small = tmp_path / "small.onnx"
    with quiet():
        torch.onnx.export(model, (torch.zeros(1, 3, 24, 24),), str(small), dynamo=True, external_data=False)
    _refused(tmp_path, small, "takes 24x24x3 images", "32x32x3", dataset=folder)
    monkeypatch.chdir(root)
    _refused(tmp_path, "usernet:pairs", "3x2", "not one logit per class", dataset=folder)
