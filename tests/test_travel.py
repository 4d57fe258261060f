"""Artifacts that travel: the manifest records what finds and identifies the test split
(name, the folder it was read from, the sha256 of its images), so that moved data is
found again by its images, and a fresh shell finds the data training used."""
import json
import os
import shutil

import numpy as np
from conftest import assert_bad_input, edgecnn

QUICK = ("--bench-runs", "5", "--bench-seconds", "0")


def test_moved_data_is_named_and_recognised_by_its_images(tmp_path):
    from PIL import Image

    from edgecnn.toolchain import data
    ds = data.load("digits")
    for c in range(3):
        (tmp_path / "a" / f"d{c}").mkdir(parents=True)
        for i, img in enumerate(ds.x_train[ds.y_train == c][:40]):
            Image.fromarray(img[:, :, 0]).save(tmp_path / "a" / f"d{c}" / f"{i}.png")
    r = edgecnn("pipeline", "--framework", "torch", "--dataset", f"folder:{tmp_path / 'a'}", "--epochs", "3",
                "--formats", "onnx", "--out", tmp_path / "p", *QUICK)
    assert r.code == 0, r
    art = tmp_path / "p" / "artifacts" / "torch"
    model = json.loads((art / "manifest.json").read_text())["model"]
    assert model["test_images"] == 24 and len(model["test_sha256"]) == 64
    assert "| artifact | d0 | d1 | d2 |" in (tmp_path / "p" / "report" / "report.md").read_text()  # class names

    shutil.move(tmp_path / "a", tmp_path / "b")
    assert_bad_input(edgecnn("validate", art), "does not exist", "pass --dataset", model["test_sha256"][:12])
    r = edgecnn("validate", art, "--dataset", f"folder:{tmp_path / 'b'}", "--json", *QUICK)
    assert r.code == 0, r
    row = r.json["results"][0]
    # the same 24 test images as training's split, not all 120: fidelity is measured as before
    assert row["samples"] == 24 and row["agreement"] == 1.0 and row["max_abs_diff"] < 1e-4


def test_a_fresh_shell_finds_the_data_training_used(mnist_runs, mnist_artifacts, shared_data):
    run = json.loads((mnist_runs["torch"][0] / "run.json").read_text())
    assert (np.array([os.path.isfile(os.path.join(run["data_dir"], f)) for f in (
        "t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz")]).all())
    nowhere = str(shared_data.parent / "no-home")
    env = {"EDGECNN_DATA_DIR": "", "EDGECNN_OFFLINE": "1", "HOME": nowhere, "XDG_CACHE_HOME": nowhere}
    r = edgecnn("validate", mnist_artifacts["torch"], "--formats", "onnx", "--precisions", "fp32", "--json",
                *QUICK, env=env)
    assert r.code == 0, r
    assert r.json["results"][0]["samples"] == 10000 and r.json["results"][0]["agreement"] == 1.0
