"""Trust: nothing a user hands edgecnn runs code it was not asked to run. Checkpoints
are read without unpickling (safetensors) or with Keras's safe mode; an artifact is
checked against its manifest's sha256 before a runtime reads it; a package unpacked for
the emulated targets may not write outside its folder."""
import io
import json
import pickle
import shutil
import tarfile

from conftest import assert_bad_input, edgecnn

from edgecnn.toolchain.emulation import escapes


class Payload:
    """What a malicious pickle does when it is loaded: here, create a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_in_place_of_weights_is_not_unpickled(digits_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    marker = tmp_path / "pwned"
    (run / "model.safetensors").write_bytes(pickle.dumps({"conv1.weight": Payload(marker)}))
    r = edgecnn("export", run, "--out", tmp_path / "artifacts")
    assert_bad_input(r, "model.safetensors", "cannot load the weights")
    assert not marker.exists()
    assert not (tmp_path / "artifacts").exists()


def test_keras_code_in_a_model_is_refused(digits_tf_run, tmp_path):
    """A .keras file with a Lambda layer carries Python bytecode; safe mode refuses it."""
    import keras
    run = tmp_path / "run"
    shutil.copytree(digits_tf_run, run)
    marker = tmp_path / "pwned"
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    code = keras.layers.Lambda(lambda x, m=str(marker): (open(m, "w").close(), x)[1], name="payload")
    evil = keras.Model(model.inputs, code(model.outputs[0]), name="cnn")
    evil.save(run / "model.keras")
    marker.unlink(missing_ok=True)  # building the model here ran the lambda once; edgecnn must not
    r = edgecnn("export", run, "--formats", "tflite", "--out", tmp_path / "artifacts")
    assert_bad_input(r, "model.keras", "cannot load the model")
    assert "safe mode" in r.err
    assert not marker.exists()


def test_inspect_checks_the_sha256_before_loading(digits_artifacts, tmp_path):
    folder = tmp_path / "artifacts"
    shutil.copytree(digits_artifacts, folder)
    data = bytearray((folder / "model.fp32.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.fp32.onnx").write_bytes(bytes(data))
    assert_bad_input(edgecnn("inspect", folder / "model.fp32.onnx"), "sha256", "does not match",
                     "refusing to load it")
    ok = edgecnn("inspect", folder / "model.int8.tflite")
    assert ok.code == 0 and "sha256 matches manifest.json" in ok.out, ok


def test_inspect_warns_that_ptl_files_carry_code(digits_artifacts):
    r = edgecnn("inspect", digits_artifacts / "model.fp32.ptl", "--json")
    assert r.code == 0, r
    assert "TorchScript code" in r.json["warning"] and "trust" in r.json["warning"]


def tar_members(*specs) -> list:
    """Tar members as a package's data.tar would hold them: (name, type, link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, target in specs:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target or ""
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        return tar.getmembers()


def test_unpacked_paths_may_not_leave_their_folder():
    safe = tar_members(("./usr/bin/python3.11", tarfile.REGTYPE, None),
                       ("./usr/bin/python3", tarfile.SYMTYPE, "python3.11"),
                       ("./usr/lib/libz.so", tarfile.SYMTYPE, "../../lib/libz.so.1"),
                       ("./usr/lib/libc.so", tarfile.SYMTYPE, "/lib/aarch64-linux-gnu/libc.so.6"),
                       ("./usr/bin/pydoc", tarfile.LNKTYPE, "./usr/bin/python3.11"))
    assert [escapes(m) for m in safe] == [None] * 5
    unsafe = tar_members(("../evil", tarfile.REGTYPE, None),
                         ("./usr/../../evil", tarfile.REGTYPE, None),
                         ("./usr/lib/x", tarfile.SYMTYPE, "../../../../etc"),
                         ("./usr/bin/y", tarfile.LNKTYPE, "../../etc/passwd"))
    assert all(escapes(m) for m in unsafe)


def test_the_manifest_sha256_is_checked_before_validate_loads(digits_artifacts, tmp_path):
    folder = tmp_path / "artifacts"
    shutil.copytree(digits_artifacts, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    victim = next(a for a in manifest["artifacts"] if a["file"] == "model.int8.ptl")
    victim["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert_bad_input(edgecnn("validate", folder), "model.int8.ptl", "does not match", "refusing to run it")
