"""Reproducible runs and artifacts: the same seed trained twice on CPU gives the same
weights, and the same run exported twice with the same options gives byte-identical
artifacts in every format. What may differ is named: the manifest's time stamps, and
the save date that Keras writes into a .keras file."""
import hashlib
import json
import zipfile

import pytest
from conftest import edgecnn


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_torch_weights(digits_run, tmp_path):
    """digits_run is `edgecnn train --epochs 10`; the same command again, same bytes."""
    again = tmp_path / "again"
    r = edgecnn("train", "--epochs", "10", "--out", again)
    assert r.code == 0, r
    assert sha(again / "model.safetensors") == sha(digits_run / "model.safetensors")
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (digits_run, again))
    assert first == second


def test_same_seed_same_keras_weights(digits_tf_run, tmp_path):
    """The weights file inside model.keras is byte-identical; the .keras zip itself is
    not: Keras writes the save time into metadata.json, and the Python id() of a shared
    object (the dtype policy) into config.json as "shared_object_id"."""
    again = tmp_path / "again"
    r = edgecnn("train", "--framework", "tf", "--epochs", "2", "--out", again)
    assert r.code == 0, r
    with zipfile.ZipFile(digits_tf_run / "model.keras") as a, zipfile.ZipFile(again / "model.keras") as b:
        assert a.read("model.weights.h5") == b.read("model.weights.h5")
        configs = [json.loads(z.read("config.json"), object_hook=without_object_ids) for z in (a, b)]
        assert configs[0] == configs[1]
        meta_a, meta_b = (json.loads(z.read("metadata.json")) for z in (a, b))
    assert {k for k in meta_a if meta_a[k] != meta_b.get(k)} <= {"date_saved"}


def without_object_ids(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "shared_object_id"}


def without_times(manifest: dict) -> dict:
    """The manifest less what records when and how long: 'created' and each 'seconds'."""
    m = dict(manifest)
    m.pop("created")
    m["artifacts"] = [{k: v for k, v in a.items() if k != "seconds"} for a in m["artifacts"]]
    return m


@pytest.mark.parametrize("source,formats,made", [("digits_run", "tflite,ptl,onnx", 6), ("digits_tf_run", "tflite", 2)])
def test_export_twice_is_byte_identical(source, formats, made, request, tmp_path):
    """A Keras run's .ptl and .onnx come from the same PyTorch twin, through the same
    converters, as a PyTorch run's: its own path is Keras to TFLite."""
    run = request.getfixturevalue(source)
    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        r = edgecnn("export", run, "--formats", formats, "--int8", "--out", out)
        assert r.code == 0, r
    files = sorted(p.name for p in outs[0].iterdir())
    assert files == sorted(p.name for p in outs[1].iterdir())
    artifacts = [f for f in files if f != "manifest.json"]
    assert len(artifacts) == made + 1  # and reference.npz
    differ = [f for f in artifacts if sha(outs[0] / f) != sha(outs[1] / f)]
    assert not differ, f"not byte-identical: {differ}"
    manifests = [json.loads((o / "manifest.json").read_text()) for o in outs]
    assert without_times(manifests[0]) == without_times(manifests[1])
