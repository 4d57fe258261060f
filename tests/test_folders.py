"""The folders edgecnn writes: a command handed the wrong one says which it wants, and
what is written follows the user's umask as other tools' output does."""
import os
import stat
import subprocess

import pytest
from conftest import EDGECNN, assert_bad_input, edgecnn


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("layout") / "p"
    r = edgecnn("pipeline", "--framework", "torch", "--epochs", "1", "--formats", "tflite", "--out", out,
                "--bench-runs", "5", "--bench-seconds", "0")
    assert r.code == 0, r
    return out


def test_a_wrong_folder_or_file_gets_a_hint(pipeline_dir):
    p = pipeline_dir
    art, run, tfl = p / "artifacts" / "torch", p / "runs" / "torch", p / "artifacts" / "torch" / "model.fp32.tflite"
    assert_bad_input(edgecnn("inspect", art), "is an artifact folder", f"edgecnn inspect {tfl}")
    assert_bad_input(edgecnn("inspect", p), "pipeline's folder", f"edgecnn inspect {tfl}")
    assert_bad_input(edgecnn("export", tfl), "is an artifact file", "the run folder")
    assert_bad_input(edgecnn("export", p), "pipeline's folder", f"edgecnn export {run}")
    assert_bad_input(edgecnn("validate", p), "pipeline's folder", f"edgecnn validate {art}")
    assert_bad_input(edgecnn("validate", p / "artifacts"), "holds artifact folders", str(art))
    assert_bad_input(edgecnn("validate", run), "is a training run", f"edgecnn export {run}")


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(pipeline_dir, tmp_path, mask):
    out = tmp_path / "art"
    r = subprocess.run(f"umask {mask:03o} && exec {EDGECNN} export {pipeline_dir / 'runs' / 'torch'} "
                       f"--formats tflite --out {out}", shell=True, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for path in [out, *out.iterdir()]:
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(os.stat(path).st_mode) == want, (path, oct(os.stat(path).st_mode))
