"""The acceptance bar: on MNIST, both frameworks reach 99.2 % test accuracy within 3
epochs with the defaults. Trains on the full 60,000 images (about a minute each)."""
import json

import pytest


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_mnist_reaches_99_2_in_3_epochs(mnist_runs, framework):
    out, res = mnist_runs[framework]
    assert res["framework"] == framework and res["epochs"] == 3 and res["params"] == 421642
    assert res["test_accuracy"] >= 0.992, res
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_samples"] == 10000 and metrics["test_accuracy"] == res["test_accuracy"]
    run = json.loads((out / "run.json").read_text())
    assert run["dataset"] == "mnist" and run["framework"] == framework
