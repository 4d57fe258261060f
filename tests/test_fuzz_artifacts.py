"""Fuzz: the artifacts themselves, damaged, through `inspect`'s loader. Each file is
opened by its real runtime in a child process (runtime/sandbox.py), so a runtime that
crashes on it (the lite interpreter segfaults on some bit-flipped .ptl files) costs a
child, and the file is reported invalid in one line."""
import hashlib
import json
import shutil

import pytest
from conftest import FAST_BENCH, assert_bad_input, edgecnn
from fuzzing import FUZZ_TIMEOUT_S, assert_covered, corrupted, fuzz_settings, outcome
from hypothesis import given

from edgecnn.runtime import sandbox
from edgecnn.toolchain import inspect
from edgecnn.toolchain.errors import BadInput

pytestmark = pytest.mark.timeout(FUZZ_TIMEOUT_S)


@pytest.mark.parametrize("name", ["model.int8.tflite", "model.fp32.onnx", "model.int8.ptl", "model.int8.pte"])
def test_fuzz_artifact(request, tmp_path, name):
    sandbox.start()  # the forkserver imports every runtime once; each case is then a fork
    # the ExecuTorch file is not among export's defaults: it comes from a folder of its own
    made = request.getfixturevalue("digits_pte" if name.endswith(".pte") else "digits_artifacts")
    seed = (made / name).read_bytes()
    path = tmp_path / name  # no manifest beside it: the runtime is what reads it
    cases = []

    @fuzz_settings
    @given(content=corrupted(seed))
    def case(content):
        path.write_bytes(content)
        result = outcome(inspect.describe, path)
        if not isinstance(result, BadInput):
            assert result["operators"] and result["input"]["dtype"] and result["output"]["dtype"]
        cases.append(result)

    case()
    assert_covered(cases)


FAULTS = ("SIGSEGV", "SIGABRT", "SIGBUS")


@pytest.fixture(scope="module")
def crashing_ptl(digits_artifacts, tmp_path_factory):
    """A damaged .ptl that crashes the lite interpreter's loader: bit flips, seeded,
    until one does (a few in a thousand do). Whether a given file crashes depends on the
    process's memory layout, which address-space randomisation changes from run to run:
    the same file can be a std::bad_alloc in the next process. Only a fault counts: a
    file that makes the loader allocate without end is cut short by the child's memory
    cap and reported as one it cannot load."""
    import random
    seed = (digits_artifacts / "model.int8.ptl").read_bytes()
    path = tmp_path_factory.mktemp("crash") / "model.int8.ptl"
    for i in range(3000):
        b = bytearray(seed)
        rng = random.Random(i)
        for _ in range(rng.randint(1, 8)):
            j = rng.randrange(len(b))
            b[j] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(b))
        result = outcome(inspect.describe, path)
        if isinstance(result, BadInput) and any(f"crashed ({s})" in str(result) for s in FAULTS):
            return path, str(result)
    pytest.skip("no bit flip in 3000 crashed the lite interpreter on this build")


def test_a_runtime_crash_in_inspect_is_reported_not_fatal(crashing_ptl):
    path, message = crashing_ptl  # this process survived the crash to get here
    assert any(s in message for s in FAULTS), message
    assert "not a valid ptl artifact" in message
    r = edgecnn("inspect", path)  # as a user runs it: it crashes again, or fails to load
    assert_bad_input(r, "model.int8.ptl")
    assert any(s in r.err for s in ("crashed (SIG", "cannot load it", "cannot read it")), r


def test_a_runtime_crash_in_validate_is_an_error_row(crashing_ptl, digits_artifacts, tmp_path):
    """The same file, re-hashed into its manifest as if export had written it: validate
    runs it in a harness process of its own, which dies (or, with another memory layout,
    fails to load it); either way its row is an error, the other rows are not, and the
    exit status is 2."""
    folder = tmp_path / "artifacts"
    shutil.copytree(digits_artifacts, folder)
    shutil.copy(crashing_ptl[0], folder / "model.int8.ptl")
    manifest = json.loads((folder / "manifest.json").read_text())
    for e in manifest["artifacts"]:
        if e["file"] == "model.int8.ptl":
            e["bytes"] = (folder / e["file"]).stat().st_size
            e["sha256"] = hashlib.sha256((folder / e["file"]).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    r = edgecnn("validate", folder, "--formats", "ptl", "--json", *FAST_BENCH)
    assert r.code == 2, r
    rows = {row["file"]: row for row in r.json["results"]}
    assert rows["model.fp32.ptl"]["status"] == "pass"
    assert rows["model.int8.ptl"]["status"] == "error"
    reason = rows["model.int8.ptl"]["reason"]  # "the harness crashed (SIGSEGV) on local", or the load error
    assert reason and reason in r.err.splitlines()[-1], r


def _allocate_after_the_cap(size: int, send) -> None:
    sandbox._limit_memory(0)
    try:
        bytearray(size)
        send.send("allocated")
    except MemoryError:
        send.send("refused")


def test_a_loader_that_allocates_without_end_is_refused_its_memory():
    """The child that opens a user's file may grow by the load budget and no more, so a
    damaged file that asks for gigabytes fails there instead of taking the machine."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    for size, expected in ((sandbox.LOAD_MEMORY_BYTES // 4, "allocated"), (2 * sandbox.LOAD_MEMORY_BYTES, "refused")):
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_allocate_after_the_cap, args=(size, send))
        child.start()
        assert receive.recv() == expected, size
        child.join()
