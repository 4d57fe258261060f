"""Artifacts that edgecnn did not make: a .tflite from TFLiteConverter and an .onnx from
torch.onnx.export, each from a model trained here in its own framework's plain API, are
validated as lone files on a named test set, with their accuracy as the framework
measures it and their preprocessing as the user declares it."""
import numpy as np
import pytest

from conftest import FAST_BENCH, assert_bad_input, edgecnn

MEAN, STD = [0.2, 0.3, 0.4], [0.25, 0.25, 0.3]


@pytest.fixture(scope="module")
def split(rgb_digits):
    """The folder read through edgecnn's loader; its train split trains the models."""
    from edgecnn.toolchain import data
    return data.load(f"folder:{rgb_digits}")


@pytest.fixture(scope="module")
def scored(rgb_digits):
    """What validate scores on `--dataset folder:...`: every image, since the user named
    the folder as a test set; the frameworks' own accuracy is measured on it too."""
    from edgecnn.toolchain import data
    return data.load(f"folder:{rgb_digits}", whole=True)


@pytest.fixture(scope="module")
def keras_tflite(split, scored, tmp_path_factory):
    """A small Keras CNN trained briefly, converted by TFLiteConverter to fp32 and, with a
    representative dataset, to full int8."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(0)
    x, y = split.x_train.astype(np.float32) / 255, split.y_train
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=40, batch_size=16, verbose=0)
    root = tmp_path_factory.mktemp("foreign-tflite")
    (root / "mine.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(100))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    (root / "mine.int8.tflite").write_bytes(conv.convert())
    logits = model.predict(scored.x_test.astype(np.float32) / 255, verbose=0)
    return root, float((logits.argmax(1) == scored.y_test).mean())


def _validate(*args):
    r = edgecnn("validate", *args, *FAST_BENCH, "--json")
    assert r.code == 0, r
    return r.json["results"]


def test_a_keras_tflite_file_is_validated_on_a_named_folder(keras_tflite, rgb_digits):
    root, keras_accuracy = keras_tflite
    row, = _validate(root / "mine.tflite", "--dataset", f"folder:{rgb_digits}")
    assert row["status"] == "pass" and row["format"] == "tflite" and row["precision"] == "fp32", row
    assert row["accuracy"] == pytest.approx(keras_accuracy, abs=1 / row["samples"]), row
    assert row["agreement"] is None and row["model"] == "mine.tflite"  # no reference named
    # its int8 twin, against the fp32 file as the reference: fidelity is measured
    row, = _validate(root / "mine.int8.tflite", "--dataset", f"folder:{rgb_digits}", "--reference",
                     root / "mine.tflite", "--min-agreement", "90")
    assert row["precision"] == "int8" and row["status"] == "pass", row
    assert row["reference_accuracy"] == pytest.approx(keras_accuracy, abs=1 / row["samples"])
    assert row["agreement"] >= 0.9 and row["accuracy_drop"] is not None


def _torch_net(nhwc: bool):
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten(), nn.Linear(8, 3))

        def forward(self, x):  # an NHWC file, as Keras users' ONNX files are
            return self.body(x.permute(0, 3, 1, 2) if nhwc else x)
    torch.manual_seed(0)
    return Net()


@pytest.mark.parametrize("nhwc", [False, True], ids=["nchw", "nhwc"])
def test_a_torch_onnx_file_with_normalised_inputs_is_validated(split, scored, rgb_digits, tmp_path, nhwc):
    """Trained on (x/255 - mean)/std, as torchvision users do; the preprocessing comes
    from flags, or from mine.onnx.toml beside the file."""
    import torch
    norm = lambda imgs: (imgs.astype(np.float32) / 255 - MEAN) / STD  # noqa: E731
    to_input = lambda x: torch.from_numpy(x if nhwc else x.transpose(0, 3, 1, 2).copy())  # noqa: E731
    net = _torch_net(nhwc)
    opt = torch.optim.Adam(net.parameters(), 0.01)
    x, y = to_input(norm(split.x_train).astype(np.float32)), torch.from_numpy(split.y_train)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(to_input(norm(scored.x_test).astype(np.float32))).argmax(1).numpy()
                          == scored.y_test).mean())
    path = tmp_path / "mine.onnx"
    torch.onnx.export(net, (x[:2],), str(path), dynamo=True, external_data=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    flags = ("--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)))
    row, = _validate(path, "--dataset", f"folder:{rgb_digits}", *flags)
    assert row["status"] == "pass" and row["accuracy"] == pytest.approx(accuracy, abs=1 / row["samples"]), row
    # the same from a TOML beside the file; without it, the default (divide by 255) is wrong
    plain, = _validate(path, "--dataset", f"folder:{rgb_digits}")
    (tmp_path / "mine.onnx.toml").write_text(f"mean = {MEAN}\nstd = {STD}\n")
    row, = _validate(path, "--dataset", f"folder:{rgb_digits}")
    assert row["accuracy"] == pytest.approx(accuracy, abs=1 / row["samples"]) and plain["accuracy"] != row["accuracy"]


def test_lone_artifacts_refuse_what_does_not_fit(keras_tflite, rgb_digits, digits_artifacts, tmp_path):
    root, _ = keras_tflite
    art = root / "mine.tflite"
    assert_bad_input(edgecnn("validate", art), "mine.tflite has no manifest", "pass --dataset")
    assert_bad_input(edgecnn("validate", art, "--dataset", "digits"), "takes 32x32x3 inputs",
                     "dataset 'digits' has 8x8x1 images")
    assert_bad_input(edgecnn("validate", art, "--dataset", f"folder:{rgb_digits}", "--mean", "0.5"),
                     "mean and std come together")
    assert_bad_input(edgecnn("validate", art, "--dataset", f"folder:{rgb_digits}", "--mean", "0.5,0.5",
                             "--std", "1,1"), "mean has 2 values but the images have 3 channels")
    assert_bad_input(edgecnn("validate", digits_artifacts, "--divide-by", "1"),
                     "--divide-by is for artifact files that no manifest lists")
    assert_bad_input(edgecnn("validate", art, "--dataset", f"folder:{rgb_digits}", "--reference",
                             tmp_path / "none.onnx"), "--reference", "none.onnx")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(art.read_bytes()[:200])
    assert_bad_input(edgecnn("validate", broken, "--dataset", f"folder:{rgb_digits}"), "broken.tflite")
    bad_toml = tmp_path / "mine.tflite"
    bad_toml.write_bytes(art.read_bytes())
    (tmp_path / "mine.tflite.toml").write_text("divide_by = 255\nscale = 2\n")
    assert_bad_input(edgecnn("validate", bad_toml, "--dataset", f"folder:{rgb_digits}"),
                     "mine.tflite.toml", "unknown key 'scale'")
    # ten logits where the test set has three classes
    from edgecnn.toolchain import data
    d = data.load("digits")
    keep = lambda y: y < 3  # noqa: E731
    three = tmp_path / "three.npz"
    np.savez(three, x_train=d.x_train[keep(d.y_train)], y_train=d.y_train[keep(d.y_train)],
             x_test=d.x_test[keep(d.y_test)], y_test=d.y_test[keep(d.y_test)])
    lone = tmp_path / "ten.onnx"
    lone.write_bytes((digits_artifacts / "model.fp32.onnx").read_bytes())
    assert_bad_input(edgecnn("validate", lone, "--dataset", f"npz:{three}"),
                     "ten.onnx: its output is Nx10, not one logit per class", "(3 classes)")
    # a .ptl does not declare its output width: the harness finds it out, and says so
    ptl = tmp_path / "ten.ptl"
    ptl.write_bytes((digits_artifacts / "model.fp32.ptl").read_bytes())
    r = edgecnn("validate", ptl, "--dataset", f"npz:{three}", *FAST_BENCH)
    assert r.code == 2 and "not one logit per class (3)" in r.err.splitlines()[-1], r
    # a file beside a manifest that cannot be read is not taken for one made elsewhere
    beside = tmp_path / "export"
    beside.mkdir()
    (beside / "model.fp32.onnx").write_bytes(lone.read_bytes())
    (beside / "manifest.json").write_text("{broken")
    assert_bad_input(edgecnn("validate", beside / "model.fp32.onnx", "--dataset", "digits"),
                     "manifest.json is not valid JSON")
    assert_bad_input(edgecnn("validate", tmp_path / "typo.onnx", "--mean", "1", "--std", "1"),
                     "typo.onnx: no such artifact folder or file")
    # a lone file that the precision filter leaves out drops out beside a folder that stays
    r = edgecnn("validate", digits_artifacts, lone, "--formats", "tflite", "--precisions", "int8", *FAST_BENCH,
                "--json")
    assert r.code == 0 and [x["file"] for x in r.json["results"]] == ["model.int8.tflite"], r
