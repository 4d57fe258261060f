"""Formats as data: each format's registry entry lives in its converter and its runner;
everything else derives from them, and nothing outside converters/ and runtime/ names a
format."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from conftest import FAST_BENCH, assert_bad_input, edgecnn
from edgecnn import converters
from edgecnn.runtime import RUNNERS, format_of, runner_class
from edgecnn.toolchain import convert, export as exporting, native, train

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/numpy_runtime.py is about two runtimes by name: it times NumPy against ONNX Runtime
CHECKED = sorted(set((ROOT / "toolchain").glob("*.py")) | set((ROOT / "benchmarks").glob("*.py"))
                 - {ROOT / "benchmarks" / "numpy_runtime.py"})
FORMAT_WORDS = set(converters.FORMATS) | {runner_class(f).suffix for f in RUNNERS}
# names that are also a framework's or a twin's, so they may appear as such; an ONNX file
# a user imports is a model in its own framework (native.py), and its suffix is that framework's
SHARED_WORDS = (set(train.FRAMEWORKS) | set(convert.BUILDERS) | {".npz"}
                | set(native.FILES) | {Path(name).suffix for name in native.FILES.values()})


def test_the_two_registries_name_the_same_formats():
    assert set(converters.FORMATS) == set(RUNNERS)
    suffixes = [runner_class(f).suffix for f in RUNNERS]
    assert len(set(suffixes)) == len(suffixes) and all(s.startswith(".") for s in suffixes)
    for fmt in RUNNERS:
        cls, conv = runner_class(fmt), converters.converter(fmt)
        assert cls.format == fmt
        assert cls.title and cls.marker and cls.runtime
        assert cls.wheel or cls.not_emulated, f"{fmt}: say why emulated boards cannot run it"
        assert format_of(Path(f"x/model.fp32{cls.suffix}")) == fmt
        assert conv.TWIN in convert.BUILDERS
        assert set(conv.PRECISIONS) <= set(exporting.ALL_PRECISIONS) and "fp32" in conv.PRECISIONS
        assert conv.LAYOUT in ("NHWC", "NCHW") and conv.REQUIRES
        for opt in getattr(conv, "OPTIONS", ()):
            assert opt.default in opt.choices
    assert format_of(Path("model.h5")) is None
    from edgecnn.toolchain import report
    assert set(converters.PRECISIONS) == set(report.PRECISION_COLOURS), "every precision has its colour"
    assert set(converters.FLOAT_PRECISIONS) | set(converters.CALIBRATED) <= set(converters.PRECISIONS)


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
                ids.add(id(node.body[0].value))
    return ids


def format_branches(source: str) -> list[str]:
    """Where `source` names a format: a string that is one (or holds one as a word) where
    it cannot be a framework's name, or a comparison of a format-ish variable with one."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            words = {w.strip(" ,.:;()'\"") for w in node.value.replace(",", " ").split()}
            words |= {"." + w.rsplit(".", 1)[-1] for w in node.value.split() if "." in w}
            hits = (words & FORMAT_WORDS) - SHARED_WORDS
            if hits:
                found.append(f"line {node.lineno}: {node.value[:60]!r}")
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            names = [ast.unparse(s) for s in sides if not isinstance(s, (ast.Constant, ast.Tuple, ast.List, ast.Set))]
            consts = [c.value for s in sides for c in (s.elts if isinstance(s, (ast.Tuple, ast.List, ast.Set)) else [s])
                      if isinstance(c, ast.Constant)]
            if any(c in FORMAT_WORDS for c in consts if isinstance(c, str)) and \
                    any(k in n.lower() for n in names for k in ("fmt", "format", "suffix")):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_format_detector_finds_what_it_looks_for():
    assert format_branches('if fmt == "ptl":\n    pass\n')
    assert format_branches('if entry["format"] != "numpy":\n    pass\n')
    assert format_branches('if path.suffix in (".npz", ".x"):\n    pass\n')
    assert format_branches('MARKERS = {"tflite": "o"}\n')
    assert format_branches('x = "tflite,ptl,onnx"\n')
    assert format_branches('x = "validate .ptl on a device"\n')
    assert not format_branches('if framework == "numpy":\n    pass\n')
    assert not format_branches('"""The .ptl docstring."""\n')


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_code_outside_converters_and_runtime_names_a_format(path):
    assert format_branches(path.read_text()) == []


def test_the_cli_derives_its_format_choices_and_options_from_the_registry():
    r = edgecnn("export", "--help")
    assert r.code == 0
    text = " ".join(r.out.split())
    for fmt in converters.FORMATS:
        assert fmt in text
    for opt in converters.options().values():
        assert f"--{opt.name}" in text and all(c in text for c in opt.choices)
    assert f"[default: {','.join(converters.default_formats())}]" in text


def test_no_converter_option_shadows_a_command_s_own_flag():
    """A converter's option becomes a flag of export and pipeline: a name they already use
    (--out, --threads...) would silently take one of the two."""
    from edgecnn.toolchain.cli import cli
    for name in ("export", "pipeline"):
        flags = [flag for p in cli.commands[name].params for flag in getattr(p, "opts", ())]
        assert len(flags) == len(set(flags)), sorted(f for f in flags if flags.count(f) > 1)


def test_every_registered_format_exports_and_validates_on_digits(digits_run, tmp_path):
    """The contract: every format in the registry, at every precision it declares, goes
    through export and passes validate."""
    out = tmp_path / "all"
    r = edgecnn("export", digits_run, "--formats", ",".join(converters.FORMATS),
                "--precisions", ",".join(exporting.ALL_PRECISIONS), "--out", out)
    assert r.code == 0, r
    manifest = json.loads((out / "manifest.json").read_text())
    expected = [(f, p) for f in converters.FORMATS for p in exporting.ALL_PRECISIONS
                if p in converters.converter(f).PRECISIONS]
    assert [(a["format"], a["precision"]) for a in manifest["artifacts"]] == expected
    files = {f"model.{p}{runner_class(f).suffix}" for f, p in expected}
    assert {q.name for q in out.iterdir()} == files | {"manifest.json", "reference.npz"}
    for a in manifest["artifacts"]:
        assert a["status"] == "ok", a
    # one table row per artifact: format, precision, size, status, seconds
    rows = [line.split() for line in r.out.splitlines()[1:1 + len(expected)]]
    assert [(row[0], row[1]) for row in rows] == expected and all(row[4] == "ok" for row in rows)
    # only edgecnn's own lines on stderr: no converter dumps, no third-party banners
    assert all(line.startswith(("exporting", "bridge")) for line in r.err.splitlines()), r.err
    r = edgecnn("validate", out, *FAST_BENCH, "--json")
    assert r.code == 0, r
    rows = r.json["results"]
    assert sorted((x["format"], x["precision"]) for x in rows) == sorted(expected)
    for x in rows:
        assert x["status"] == "pass", x
        assert x["agreement"] >= 0.9, x


def test_inspect_shows_the_runner_s_trust_warning(digits_artifacts):
    for fmt in RUNNERS:
        cls = runner_class(fmt)
        path = next(digits_artifacts.glob(f"model.*{cls.suffix}"), None)
        if path is None:
            continue
        info = json.loads(edgecnn("inspect", path, "--json").out)
        assert info["format"] == fmt
        assert info.get("warning") == cls.warning


def test_pipeline_takes_the_model_width_and_converter_options(tmp_path):
    out = tmp_path / "pipe"
    r = edgecnn("pipeline", "--framework", "torch", "--model", "mobilenet", "--width", "0.5", "--epochs", "1",
                "--formats", "ptl", "--int8", "--engine", "x86", *FAST_BENCH, "--out", out, "--json")
    assert r.code == 1 or r.code == 0, r  # one epoch: the gates may fail, the plumbing may not
    doc = r.json
    spec = json.loads((out / "runs" / "torch" / "spec.json").read_text())
    assert spec["arch"] == "mobilenet" and spec["width"] == 0.5
    manifest = json.loads((out / "artifacts" / "torch" / "manifest.json").read_text())
    int8 = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
    assert int8["notes"]["engine"] == "x86"
    assert {x["status"] for x in doc["results"]} <= {"pass", "fail"}
    assert_bad_input(edgecnn("pipeline", "--model", "nosuch", "--out", tmp_path / "bad"), "unknown model")
    assert not (tmp_path / "bad").exists()


def test_pipeline_of_a_numpy_only_spec_defaults_to_the_formats_it_reaches(tmp_path):
    out = tmp_path / "xor"
    r = edgecnn("pipeline", "--framework", "numpy", "--dataset", "xor", "--model", "mlp", "--epochs", "2000",
                *FAST_BENCH, "--out", out, "--json")
    assert r.code in (0, 1), r
    assert {x["format"] for x in r.json["results"]} == set(converters.made_from("numpy"))
    assert_bad_input(edgecnn("pipeline", "--framework", "numpy", "--dataset", "xor", "--model", "mlp",
                             "--formats", "onnx", "--out", tmp_path / "bad"), "exists only in NumPy", "not onnx")
    assert not (tmp_path / "bad").exists()
