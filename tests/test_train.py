"""`edgecnn train` as a user runs it: through the installed CLI, on real data."""
import gzip
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import assert_bad_input, edgecnn

RUN_FILES = {"run.json", "spec.json", "history.json", "metrics.json"}


@pytest.mark.parametrize("framework, weights", [("torch", "model.safetensors"), ("tf", "model.keras")])
def test_train_digits_writes_a_run_folder(tmp_path, framework, weights):
    out = tmp_path / "run"
    r = edgecnn("train", "--framework", framework, "--dataset", "digits", "--out", out, "--json")
    assert r.code == 0, r
    res = r.json
    assert res["framework"] == framework and res["dataset"] == "digits" and res["epochs"] == 30
    assert res["test_accuracy"] >= 0.97, res
    assert res["params"] == 53002 and res["train_seconds"] > 0
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES | {weights})
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 31))
    assert history[-1]["loss"] < history[0]["loss"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == res["test_accuracy"] and metrics["test_samples"] == 360
    spec = json.loads((out / "spec.json").read_text())
    assert spec["input_shape"] == [8, 8, 1] and spec["scaling"]["divide_by"] == 255
    # progress went to stderr, one line an epoch when stderr is not a terminal
    assert "epoch 30/30" in r.err and "loss" in r.err and "acc" in r.err
    # nothing but the hidden staging folder's absence: no leftovers beside the run
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def _weights(run):
    if (run / "model.safetensors").exists():
        return load_file(run / "model.safetensors")
    import keras
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    return {w.path: np.asarray(w) for w in model.weights}


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_same_seed_same_result(tmp_path, framework):
    args = ["train", "--framework", framework, "--epochs", "5", "--json", "--seed", "7"]
    a = edgecnn(*args, "--out", tmp_path / "a")
    b = edgecnn(*args, "--out", tmp_path / "b")
    assert a.code == b.code == 0, (a, b)
    assert a.json["test_accuracy"] == b.json["test_accuracy"]
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    # and a different seed really is different
    c = edgecnn("train", "--framework", framework, "--epochs", "5", "--seed", "8",
                "--out", tmp_path / "c")
    assert c.code == 0, c
    wc = _weights(tmp_path / "c")
    assert not all(np.array_equal(wa[k], wc[k]) for k in wa)


def test_existing_run_folder_needs_force(tmp_path):
    out = tmp_path / "run"
    assert edgecnn("train", "--epochs", "1", "--out", out).code == 0
    before = (out / "model.safetensors").read_bytes()
    r = edgecnn("train", "--epochs", "1", "--seed", "3", "--out", out)
    assert_bad_input(r, "already exists", "--force")
    assert (out / "model.safetensors").read_bytes() == before
    r = edgecnn("train", "--epochs", "1", "--seed", "3", "--out", out, "--force")
    assert r.code == 0, r
    assert (out / "model.safetensors").read_bytes() != before
    assert json.loads((out / "run.json").read_text())["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _gz_idx_folder(tmp_path, magic=bytes([0, 0, 8, 3])):
    folder = tmp_path / "idxset"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        imgs = magic + b"".join(v.to_bytes(4, "big") for v in (n, 8, 8)) + rng.integers(0, 256, n * 64, dtype=np.uint8).tobytes()
        labels = bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + bytes(i % 2 for i in range(n))
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(imgs))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return folder


def _csv(tmp_path, rows):
    p = tmp_path / "set.csv"
    p.write_text("\n".join(rows) + "\n")
    return p


def _rows(n=20):
    return [",".join([str(i % 2)] + [str((i * 7 + j) % 256) for j in range(16)]) for i in range(n)]


def test_bad_input_unknown_dataset(tmp_path):
    assert_bad_input(edgecnn("train", "--dataset", "cifar10", "--out", tmp_path / "r"),
                     "unknown dataset 'cifar10'")


def test_bad_input_unknown_framework(tmp_path):
    assert_bad_input(edgecnn("train", "--framework", "jax", "--out", tmp_path / "r"),
                     "'jax' is not one of")


def test_bad_input_missing_data_folder(tmp_path):
    assert_bad_input(edgecnn("train", "--dataset", "mnist", "--data-dir", tmp_path / "nope",
                             "--out", tmp_path / "r"), "does not exist")


def test_bad_input_mnist_nowhere(tmp_path):
    r = edgecnn("train", "--dataset", "mnist", "--data-dir", tmp_path, "--out", tmp_path / "r",
                env={"EDGECNN_DATA_DIR": str(tmp_path / "env"), "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert_bad_input(r, "mnist not found", str(tmp_path / "env"), "edgecnn/datasets")


def test_bad_input_corrupt_gz(tmp_path, shared_data):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for f in (shared_data / "mnist").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    raw = (folder / "train-labels-idx1-ubyte.gz").read_bytes()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(raw[: len(raw) // 3])
    r = edgecnn("train", "--dataset", "mnist", "--data-dir", tmp_path, "--out", tmp_path / "r")
    assert_bad_input(r, "checksum mismatch", "train-labels-idx1-ubyte.gz")
    # the same truncation in a folder without published checksums is caught by the reader
    custom = _gz_idx_folder(tmp_path)
    raw = (custom / "train-images-idx3-ubyte.gz").read_bytes()
    (custom / "train-images-idx3-ubyte.gz").write_bytes(raw[:-20])
    assert_bad_input(edgecnn("train", "--dataset", f"idx:{custom}", "--out", tmp_path / "r"),
                     "not a readable gzip file")


def test_bad_input_wrong_idx_magic(tmp_path):
    folder = _gz_idx_folder(tmp_path, magic=bytes([0, 0, 8, 2]))
    assert_bad_input(edgecnn("train", "--dataset", f"idx:{folder}", "--out", tmp_path / "r"),
                     "magic number says 2 dimensions")


def test_bad_input_csv_ragged(tmp_path):
    rows = _rows()
    rows[6] = rows[6] + ",12"
    assert_bad_input(edgecnn("train", "--dataset", f"csv:{_csv(tmp_path, rows)}", "--out", tmp_path / "r"),
                     "line 7 has 18 columns")


def test_bad_input_csv_non_numeric(tmp_path):
    rows = _rows()
    rows[3] = rows[3].replace(",", ",x", 1)
    assert_bad_input(edgecnn("train", "--dataset", f"csv:{_csv(tmp_path, rows)}", "--out", tmp_path / "r"),
                     "line 4 has a non-numeric value")


def test_bad_input_empty_image_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    assert_bad_input(edgecnn("train", "--dataset", f"folder:{tmp_path / 'imgs'}", "--out", tmp_path / "r"),
                     "no class sub-folders")


def test_bad_input_labels_out_of_range(tmp_path):
    p = tmp_path / "set.npz"
    np.savez(p, x_train=np.zeros((6, 8, 8), np.uint8), y_train=[0, 1, 2, 0, 1, 2],
             x_test=np.zeros((3, 8, 8), np.uint8), y_test=[0, 1, 3], classes=np.array(["a", "b", "c"]))
    assert_bad_input(edgecnn("train", "--dataset", f"npz:{p}", "--out", tmp_path / "r"),
                     "test label 3 is out of range")
    rows = _rows()
    rows[2] = "-1" + rows[2][1:]
    assert_bad_input(edgecnn("train", "--dataset", f"csv:{_csv(tmp_path, rows)}", "--out", tmp_path / "r"),
                     "label -1 is out of range")


@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_bad_input_epochs(tmp_path, epochs):
    assert_bad_input(edgecnn("train", "--epochs", epochs, "--out", tmp_path / "r"),
                     "epochs must be a positive integer")
    assert not (tmp_path / "r").exists()


def test_bad_usage_is_one_line_too(tmp_path):
    assert_bad_input(edgecnn("train", "--epochs", "many"), "'many' is not a valid integer")
    assert_bad_input(edgecnn("train", "--no-such-flag"), "no such option")
    assert_bad_input(edgecnn("trian"), "no such command")


def test_a_log_hears_from_a_long_epoch(monkeypatch, capsys):
    """stderr that is not a terminal gets a line within an epoch every HEARTBEAT_S, and the
    epoch's summary line; a terminal gets tqdm's bar instead."""
    from edgecnn.toolchain import progress
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.0)
    bar = progress.EpochProgress(2, 3, 100)
    assert bar.bar is None  # pytest's captured stderr is no terminal
    bar.update(20, 0.5, 0.75)
    bar.update(20, 0.4, 0.8)
    bar.close(0.4, 0.8)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("epoch 2/3  20/100 batches  loss 0.5000  acc 0.7500")
    assert lines[1].startswith("epoch 2/3  40/100 batches") and lines[2].startswith("epoch 2/3  loss 0.4000")
