"""The acceptance bar: on MNIST, both frameworks reach 99.2 % test accuracy within 3
epochs with the defaults. Trains on the full 60,000 images (about a minute each)."""
import json

import pytest

from conftest import edgecnn


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_mnist_reaches_99_2_in_3_epochs(tmp_path, shared_data, framework):
    out = tmp_path / f"{framework}-mnist"
    r = edgecnn("train", "--framework", framework, "--dataset", "mnist", "--data-dir", shared_data,
                "--epochs", "3", "--out", out, "--json")
    assert r.code == 0, r
    res = r.json
    assert res["epochs"] == 3 and res["params"] == 421642
    assert res["test_accuracy"] >= 0.992, res
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_samples"] == 10000
    run = json.loads((out / "run.json").read_text())
    assert run["dataset"] == "mnist" and run["framework"] == framework
