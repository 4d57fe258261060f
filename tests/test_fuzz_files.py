"""Fuzz: the files a user hands edgecnn besides datasets and artifacts: an export
folder's manifest.json, edgecnn.toml, and a run folder (run.json, spec.json,
metrics.json and the safetensors or Keras weights). Each case ends in a usable result
or one clear BadInput line; see fuzzing.py."""
import json
import os
import shutil

import pytest
from conftest import edgecnn
from fuzzing import (FUZZ_EXAMPLES, FUZZ_TIMEOUT_S, assert_covered, corrupted, dumps, finite_number,
                     fuzz_settings, json_values, mistyped, outcome)
from hypothesis import given, settings, strategies as st

from edgecnn.toolchain import gates, validate
from edgecnn.toolchain.errors import BadInput
from edgecnn.toolchain.runs import Run

pytestmark = pytest.mark.timeout(FUZZ_TIMEOUT_S)


def linked_copy(src, dst) -> None:
    """A folder whose big files are hard links to the originals: cases rewrite the small
    files they damage, never the originals."""
    shutil.copytree(src, dst, copy_function=os.link)


# -- manifest.json ---------------------------------------------------------------------
def test_fuzz_manifest(digits_artifacts, tmp_path):
    folder = tmp_path / "artifacts"
    linked_copy(digits_artifacts, folder)
    manifest = folder / "manifest.json"
    text = manifest.read_text()
    manifest.unlink()  # a file of its own, not a link to the original
    doc = json.loads(text)
    work = tmp_path / "work"
    work.mkdir()
    cases = []

    def plan():
        folders = validate.open_folders([folder])
        return validate.eval_plans(folders, None, None, work)

    @fuzz_settings
    @given(content=st.one_of(corrupted(text.encode()), mistyped(doc).map(lambda d: dumps(d).encode())))
    def case(content):
        manifest.write_bytes(content)
        result = outcome(plan)
        if not isinstance(result, BadInput):
            (f, name, data_path), = result
            assert name == f.model["dataset"] and data_path.is_file()
            for e in f.entries:  # what the rows and reports read
                assert isinstance(e["file"], str) and isinstance(e["format"], str)
                assert isinstance(e["precision"], str) and isinstance(e["status"], str)
        cases.append(result)

    case()
    assert_covered(cases)


# -- edgecnn.toml ----------------------------------------------------------------------
def toml_value(v) -> str:
    """A TOML literal for a JSON-like value: what a user might put after `key =`."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(v), repr(v))
    if isinstance(v, str):
        return toml_key(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    return '""'


def toml_key(s: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML has no surrogate
    pairs, so characters outside ASCII stay as they are."""
    return json.dumps(s, ensure_ascii=False)


def test_fuzz_gates_toml(tmp_path):
    seed = "[gates]\nmax_accuracy_drop = 0.5\nmin_agreement = 99.0\nmax_latency_ms = 2\nmax_size_kb = 512\n"
    path = tmp_path / "edgecnn.toml"
    cases = []
    keys = st.sampled_from((*gates.GATES, "max_latency", "gates", "")) | st.text(max_size=10)

    @st.composite
    def written(draw):
        """A TOML file with any keys and values, in [gates] or another table."""
        table = draw(st.sampled_from(("gates", "gates", "gates.int8", 'gates."tflite.int8"', "gates.tflite.int8",
                                             "gates.fp16", "gate", "tool.edgecnn", "")))
        lines = [f"[{table}]"] if table else []
        for key, value in draw(st.dictionaries(keys, json_values, max_size=5)).items():
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
        return "\n".join(lines).encode()

    @fuzz_settings
    @given(content=st.one_of(corrupted(seed.encode()), written()))
    def case(content):
        path.write_bytes(content)
        result = outcome(gates.load_config, path)
        if not isinstance(result, BadInput):
            tables, where = result
            assert where == str(path) and set(tables) <= {"", *gates.scopes()}
            for limits in tables.values():
                assert set(limits) <= set(gates.GATES)
                assert all(finite_number(v) and v >= 0 for v in limits.values())
        cases.append(result)

    case()
    assert_covered(cases)


# -- run folders -----------------------------------------------------------------------
def open_run(folder):
    """Everything export takes from a run folder before it converts anything."""
    run = Run(folder)
    return run, run.load_twin()[1]


def fuzz_run_folder(source, tmp_path, weights: str, examples: int) -> list:
    folder = tmp_path / "run"
    linked_copy(source, folder)
    texts = {}
    for name in ("run.json", "spec.json", "metrics.json", weights):
        texts[name] = (folder / name).read_bytes()
        (folder / name).unlink()
        (folder / name).write_bytes(texts[name])
    docs = {n: json.loads(t) for n, t in texts.items() if n.endswith(".json")}
    cases = []

    def damaged(name):
        if name == weights:
            return corrupted(texts[name])
        return st.one_of(corrupted(texts[name]), mistyped(docs[name]).map(lambda d: dumps(d).encode()))

    @settings(fuzz_settings, max_examples=examples)
    @given(name=st.sampled_from(sorted(texts)), damage=st.data())
    def case(name, damage):
        for n, t in texts.items():
            (folder / n).write_bytes(t)
        (folder / name).write_bytes(damage.draw(damaged(name)))
        result = outcome(open_run, folder)
        if not isinstance(result, BadInput):
            run, model = result
            assert run.spec.num_classes >= 2 and isinstance(run.dataset, str) and isinstance(run.seed, int)
        cases.append(result)

    case()
    return cases


def test_fuzz_run_folder_torch(digits_run, tmp_path):
    cases = fuzz_run_folder(digits_run, tmp_path, "model.safetensors", FUZZ_EXAMPLES)
    assert_covered(cases)


KERAS_EXAMPLES = max(1, FUZZ_EXAMPLES // 5)  # a Keras load is about 0.1 s; the trust tests cover the rest


def test_fuzz_run_folder_keras(digits_tf_run, tmp_path):
    cases = fuzz_run_folder(digits_tf_run, tmp_path, "model.keras", KERAS_EXAMPLES)
    assert len(cases) >= KERAS_EXAMPLES
    assert 0 < sum(isinstance(c, BadInput) for c in cases) < len(cases)


@pytest.fixture(scope="module")
def digits_numpy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("numpy") / "run"
    r = edgecnn("train", "--framework", "numpy", "--epochs", "1", "--out", out)
    assert r.code == 0, r
    return out


def test_fuzz_run_folder_numpy(digits_numpy_run, tmp_path):
    assert_covered(fuzz_run_folder(digits_numpy_run, tmp_path, "model.npz", FUZZ_EXAMPLES))


def test_fuzz_numpy_network_file(digits_numpy_run, tmp_path):
    """The .npz alone, FUZZ_EXAMPLES times: the parser that the NumPy runtime and the run
    folder share (edgecnn.runtime.npnet.load), in this process (it is pure Python and
    NumPy, nothing there can crash the interpreter). Besides damaged bytes (which the zip
    CRC mostly catches), well-formed archives carry a mistyped layer description or a
    parameter removed, reshaped or of another dtype."""
    import io

    import numpy as np
    folder = tmp_path / "run"
    linked_copy(digits_numpy_run, folder)
    seed = (folder / "model.npz").read_bytes()
    (folder / "model.npz").unlink()
    with np.load(io.BytesIO(seed)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["__model__"].tobytes())

    def archive(a):
        buf = io.BytesIO()
        np.savez(buf, **a)
        return buf.getvalue()

    def with_meta(doc):
        return archive({**arrays, "__model__": np.frombuffer(dumps(doc).encode(), np.uint8)})

    @st.composite
    def with_bad_array(draw):
        a = dict(arrays)
        key = draw(st.sampled_from(sorted(a)))
        how = draw(st.sampled_from(["drop", "shape", "dtype"]))
        if how == "drop":
            del a[key]
        elif how == "shape":
            shape = draw(st.lists(st.integers(0, 12), min_size=0, max_size=4))  # small: hypothesis keeps cases
            a[key] = np.zeros(shape, np.float32)
        else:
            a[key] = a[key].astype(draw(st.sampled_from(["float64", "float16", "int8", "uint8", "bool"])))
        return archive(a)

    cases = []

    @fuzz_settings
    @given(content=st.one_of(corrupted(seed), mistyped(meta).map(with_meta), with_bad_array()))
    def case(content):
        (folder / "model.npz").write_bytes(content)
        result = outcome(lambda: Run(folder).load_numpy())
        if not isinstance(result, BadInput):
            assert result.classes == 10 and result.count_params() > 0
        cases.append(result)

    case()
    assert_covered(cases)
