import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The installed console script, beside the interpreter that runs the tests.
EDGECNN = Path(sys.executable).parent / "edgecnn"

os.environ["EDGECNN_OFFLINE"] = "1"  # nothing downloads at test time
os.environ.setdefault("EDGECNN_DATA_DIR", str(ROOT.parent / "shared" / "data"))

# Under pytest-xdist each worker (and every process it starts) gets its own share of the
# cores: two trainings that each spin two OpenMP threads on two cores slowed each other
# past a 900 s timeout in CI. Training's default thread count follows this affinity.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER and hasattr(os, "sched_setaffinity"):
    _cores, _workers = sorted(os.sched_getaffinity(0)), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if len(_cores) >= _workers > 1:
        _share = len(_cores) // _workers
        _i = int(WORKER.removeprefix("gw"))
        os.sched_setaffinity(0, _cores[_i * _share:(_i + 1) * _share])


def built_once(tmp_path_factory, name: str, build):
    """A session fixture's value, built once for the whole run: under xdist the first
    worker to ask builds it into a folder all workers share (under a lock), and the others
    wait and read what it returned, which must be JSON. `build(folder)` makes the files."""
    if not WORKER:
        return build(tmp_path_factory.mktemp(name))
    import fcntl
    root = tmp_path_factory.getbasetemp().parent / name  # one folder per run, beside the workers'
    root.mkdir(exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "value.json"
        if done.is_file():
            return json.loads(done.read_text())
        value = build(root / "files")
        done.write_text(json.dumps(value))
        return value


def data_dir() -> Path:
    return Path(os.environ["EDGECNN_DATA_DIR"]).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = data_dir()
    if not (d / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file():
        if os.environ.get("EDGECNN_REQUIRE_DATA") == "1":
            pytest.fail(f"MNIST is required but not in {d}")
        pytest.skip(f"MNIST not in {d} (set EDGECNN_DATA_DIR)")
    return d


class Result:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    @property
    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"exit {self.code}\n--- stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-3000:]}"


def edgecnn(*args, cwd=None, env=None, timeout=900) -> Result:
    """Run the installed CLI as a user would, in a child process."""
    e = dict(os.environ, **(env or {}))
    proc = subprocess.run([str(EDGECNN), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=e, timeout=timeout)
    return Result(proc)


def assert_bad_input(r: Result, *fragments: str) -> None:
    """Exit 2 and exactly one line on stderr that names the problem; no traceback."""
    assert r.code == 2, r
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1, r
    assert lines[0].startswith("edgecnn: error:"), r
    assert "Traceback" not in r.err
    for f in fragments:
        assert f.lower() in lines[0].lower(), (f, r)


@pytest.fixture(scope="session")
def mnist_runs(shared_data, tmp_path_factory) -> dict:
    """One MNIST run per framework with the default recipe (3 epochs), trained once for
    the whole session through the CLI: {framework: (run folder, train's JSON)}."""
    def build(root):
        runs = {}
        for fw in ("torch", "tf"):
            out = root / fw
            r = edgecnn("train", "--framework", fw, "--dataset", "mnist", "--data-dir", shared_data,
                        "--epochs", "3", "--out", out, "--json")
            assert r.code == 0, r
            runs[fw] = (str(out), r.json)
        return runs
    return {fw: (Path(out), doc) for fw, (out, doc) in built_once(tmp_path_factory, "mnist-runs", build).items()}


@pytest.fixture(scope="session")
def mnist_artifacts(mnist_runs, tmp_path_factory) -> dict:
    """All six artifacts (3 formats x fp32, int8) from each MNIST run."""
    def build(root):
        arts = {}
        for fw, (run, _) in mnist_runs.items():
            out = root / fw
            r = edgecnn("export", run, "--int8", "--out", out)
            assert r.code == 0, r
            arts[fw] = str(out)
        return arts
    return {fw: Path(out) for fw, out in built_once(tmp_path_factory, "mnist-artifacts", build).items()}


def _made(tmp_path_factory, key: str, folder: str, *args) -> Path:
    """The FOLDER that `edgecnn ARGS --out FOLDER` makes, made once per test run."""
    def build(root):
        r = edgecnn(*args, "--out", root / folder)
        assert r.code == 0, r
        return str(root / folder)
    return Path(built_once(tmp_path_factory, key, build))


@pytest.fixture(scope="session", autouse=True)
def every_runtime_in_the_sandbox():
    """The sandbox's forkserver imports every runtime when it first starts, in whichever
    test that is: started by a test that loads one format, it would preload only that
    one, and each later file of another format would import its runtime in the child
    (ExecuTorch takes 7 s: a thousand fuzz cases would take hours)."""
    from edgecnn.runtime import sandbox
    sandbox.start()


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    return _made(tmp_path_factory, "digits", "torch-digits", "train", "--epochs", "10")


@pytest.fixture(scope="session")
def digits_tf_run(tmp_path_factory) -> Path:
    """A short Keras run on digits (2 epochs: the tests need its files, not its accuracy)."""
    return _made(tmp_path_factory, "digits-tf", "tf-digits", "train", "--framework", "tf", "--epochs", "2")


@pytest.fixture(scope="session")
def digits_artifacts(digits_run, tmp_path_factory) -> Path:
    """fp32 and int8 artifacts of the digits run, in all three formats."""
    return _made(tmp_path_factory, "digits-artifacts", "torch-digits", "export", digits_run, "--int8")


@pytest.fixture(scope="session")
def digits_pte(digits_run, tmp_path_factory) -> Path:
    """fp32 and int8 ExecuTorch files of the digits run (a format export makes when asked)."""
    return _made(tmp_path_factory, "digits-pte", "torch-digits", "export", digits_run, "--formats", "pte", "--int8")


@pytest.fixture(scope="session")
def mnist_pte(mnist_runs, tmp_path_factory) -> Path:
    """fp32 and int8 ExecuTorch files of the PyTorch MNIST run."""
    return _made(tmp_path_factory, "mnist-pte", "torch-mnist", "export", mnist_runs["torch"][0],
                 "--formats", "pte", "--int8")


FAST_BENCH = ("--bench-runs", "50", "--bench-seconds", "0.05")  # tests check behaviour, not speed


@pytest.fixture(scope="session")
def emulated_env(tmp_path_factory) -> dict:
    """The emulated aarch64 Python in a cache of its own, provisioned from nothing by the
    CLI as a user's first run is; pip and uv keep their usual caches so wheels are not fetched twice."""
    import shutil
    if not (shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")) or not (
            shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")):
        if os.environ.get("EDGECNN_REQUIRE_EMULATION") == "1":
            pytest.fail("qemu-user-static is required but not installed")
        pytest.skip("qemu-user-static is not installed")

    def build(cache):
        env = {"XDG_CACHE_HOME": str(cache),
               "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
               "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv"))}
        first = edgecnn("device", "setup", "emulated", "--json", env=env, timeout=900)
        assert first.code == 0, first
        assert first.json["reused"] is False and first.json["x86"]["x86-avx2"]["reused"] is False
        return env
    return built_once(tmp_path_factory, "xdg-cache", build)


@pytest.fixture(scope="session")
def emulated_torch(emulated_env, tmp_path_factory) -> dict:
    """The opt-in torch extra added, as a user adds it, to a copy of the emulated
    environment (hard links), so that what other tests' emulated boards run does not
    depend on whether it was added yet: {"env": ..., "setup": its JSON, "announced": the
    line it printed before fetching anything}."""
    def build(root):
        cache = Path(root) / "cache"
        shutil.copytree(Path(emulated_env["XDG_CACHE_HOME"]), cache, symlinks=True, copy_function=os.link)
        env = dict(emulated_env, XDG_CACHE_HOME=str(cache))
        r = edgecnn("device", "setup", "emulated", "--with", "torch", "--json", env=env, timeout=1800)
        assert r.code == 0, r
        first = next(ln for ln in r.err.splitlines() if "--with torch" in ln)
        return {"env": env, "setup": r.json, "announced": first}
    return built_once(tmp_path_factory, "xdg-cache-torch", build)


@pytest.fixture(scope="session")
def rgb_digits(tmp_path_factory):
    """scikit-learn's digits as a folder of 32x32 RGB PNGs: each 8x8 image scaled up 4x
    and tinted with a random colour (3 classes, 60 images each)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    root = tmp_path_factory.mktemp("rgb-digits")
    d = load_digits()
    rng = np.random.default_rng(0)
    for label in (0, 1, 2):
        folder = root / f"digit{label}"
        folder.mkdir()
        for i, img in enumerate(d.images[d.target == label][:60]):
            big = np.kron(img / 16, np.ones((4, 4)))
            rgb = (big[..., None] * rng.uniform(0.4, 1.0, 3) * 255).round().astype(np.uint8)
            Image.fromarray(rgb, "RGB").save(folder / f"{i}.png")
    return root


# -- a stand-in device: OpenSSH's server on loopback ------------------------------------
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").is_file() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """A running sshd and an ssh config whose host `pi` reaches it with a trusted key."""
    if SSHD is None or shutil.which("ssh") is None or os.geteuid() != 0:
        if os.environ.get("EDGECNN_REQUIRE_SSH") == "1":
            pytest.fail("openssh-server and running as root are required for the ssh tests")
        pytest.skip("needs openssh-server and root (sshd switches users)")
    d = tmp_path_factory.mktemp("sshd")
    keygen(d / "host_key")
    keygen(d / "user_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (d / "ssh_config").write_text(
        f"Host pi\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {d / 'user_key'}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {d / 'known_hosts'}\n")
    yield {"dir": d, "port": port, "config": str(d / "ssh_config")}
    server.terminate()
    server.wait(timeout=10)
