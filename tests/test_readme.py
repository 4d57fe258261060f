"""Every shell command in the README, run as a user runs it: in README order, in a scratch
folder laid out as a checkout (the project's .venv, Makefile, pyproject.toml and
benchmarks/ linked in, and the files the README's examples name: mine.keras,
mypackage/nets.py, net.safetensors, mine.pt2, mine.onnx, path/to/images/), each line
through bash, and each must exit 0. Output is checked where the README shows it.

What CI cannot afford or reach is swapped by SWAPS, each with its reason, and the lines
that must not run in a test are in NOT_RUN, with theirs. A line in neither runs as
written; a swap or an entry that matches no README line fails the test, so these tables
cannot outlive the README."""
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"
MNIST = "the MNIST-size sets cost CI minutes a command: digits (inside scikit-learn) stands in"
PI = "no Raspberry Pi here: a loopback sshd stands in for both, the project's Python as the device's"
SWAPS = [  # (README text, what runs instead, why)
    ("--dataset mnist", "--dataset digits", MNIST),
    ("--dataset fashion-mnist --epochs 10 --frameworks torch,tf",
     "--dataset digits --epochs 1 --frameworks torch --models resnet",
     "the zoo on Fashion-MNIST is a long benchmark: one epoch of the model a later command exports"),
    ("--target ssh://pi@raspberrypi.local", "--ssh-config {ssh_config} --remote-python {python} --target ssh://pi", PI),
    ("ssh://pi@pi5:2222", "ssh://pi5", PI),
    ("--baseline reports/before/results.json", "--baseline reports/before/results.json --latency-tolerance 400",
     "the other test worker's load can change between the two runs, which no noise model of one run sees; "
     "the accuracy judgement is unchanged"),
]
SHOWN = {  # a command's words -> what its output holds where the README shows it
    " predict ": r"\A/tmp/digit\.png: 7 [\d.]+%, \d [\d.]+%, \d [\d.]+%\n\Z",
    "--max-accuracy-drop 0 ": r"^repair of ptl int8 \(budget 0 points below fp32's [\d.]+% on 360 test images\): "
                              r"met\n  float layers +accuracy +drop +size +p50 latency\n  \(none\) ",
}
NOT_RUN = {
    "make test": "the command that runs this test",
    "apt-get install qemu-user-static": "a system package, which .ci/run installs before the tests",
    ".venv/bin/edgecnn device setup emulated --with torch": "2.9 GB from PyPI: tests/test_emulated.py runs this "
                                                           "command in a cache of its own, which its tests use",
    "apt-get install qemu-user gcc libc6-dev llvm": "system packages, which .ci/run installs before the tests",
    ".venv/bin/edgecnn validate artifacts/torch-mnist --target emulated:x86-avx2 --target emulated:cortex-a76 "
    "--target local": "tests/test_int8_hosts.py runs these three targets on Fashion-MNIST int8 files of both "
                      "frameworks, where saturation shows; on digits it would run the same kernels again",
    ".venv/bin/python benchmarks/pi_calibration.py --write": "a benchmark of minutes (MobileNets counted under emulation); "
                                                   "tests/test_pi_latency.py reads what it wrote",
}


def shell_blocks() -> list[tuple[int, list[str]]]:
    """The README's ```sh blocks: (line number of the block, its command lines)."""
    text = README.read_text()
    out = []
    for m in re.finditer(r"^```sh\n(.*?)^```", text, re.S | re.M):
        lines = [line for line in m.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]
        out.append((text[:m.start()].count("\n") + 1, lines))
    return out


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


BLOCKS = shell_blocks()


def as_run(line: str, subs: dict) -> str | None:
    """The command run for a README line: None when NOT_RUN lists it."""
    if any(line.startswith(k) for k in NOT_RUN):
        return None
    for old, new, _ in SWAPS:
        line = line.replace(old, new.format(**subs))
    return line


def test_the_tables_match_the_readme():
    lines = [line for _, block in BLOCKS for line in block]
    assert len(lines) >= 30, "the README's sh blocks were not found"
    for old, _, _ in SWAPS:
        assert any(old in line for line in lines), f"SWAPS: {old!r} is in no README command"
    for words in SHOWN:
        assert any(words in line for line in lines), f"SHOWN: {words!r} is in no README command"
    for start in NOT_RUN:
        assert any(line.startswith(start) for line in lines), f"NOT_RUN: {start!r} is in no README command"


NETS = '''\
import torch.nn as nn


def make_net():
    """A small CNN for 32x32 RGB images in 3 classes."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
'''


def _user_files(root: Path, images: Path) -> None:
    """The files the README's import examples name, made as their users would make them."""
    import importlib

    import keras
    import torch
    from safetensors.torch import save_file
    shutil.copytree(images, root / "path" / "to" / "images")
    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]).save(root / "mine.keras")
    (root / "mypackage").mkdir()
    (root / "mypackage" / "__init__.py").write_text("")
    (root / "mypackage" / "nets.py").write_text(NETS)
    sys.path.insert(0, str(root))
    try:
        net = importlib.import_module("mypackage.nets").make_net().eval()
    finally:
        sys.path.pop(0)
        sys.modules.pop("mypackage.nets", None), sys.modules.pop("mypackage", None)
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "net.safetensors"))
    x = torch.zeros(2, 3, 32, 32)
    batch = ({0: torch.export.Dim("batch", min=1)},)
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=batch), str(root / "mine.pt2"))
    torch.onnx.export(net, (x,), str(root / "mine.onnx"), dynamo=True, external_data=False, dynamic_shapes=batch)


def _ssh_config(root: Path, device: dict) -> Path:
    """The loopback device under the two names the README gives Pis."""
    text = Path(device["config"]).read_text()
    config = root / "ssh_config"
    config.write_text(text + text.replace("Host pi\n", "Host pi5\n"))
    return config


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, rgb_digits, emulated_env, device):
    root = tmp_path_factory.mktemp("checkout")
    for name in (".venv", "benchmarks", "Makefile", "pyproject.toml"):
        (root / name).symlink_to(ROOT / name)
    _user_files(root, rgb_digits)
    env = dict(os.environ, **emulated_env)
    subs = {"ssh_config": _ssh_config(root, device), "python": sys.executable}
    return root, env, subs


def _run(command: str, root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.parametrize("start, lines", BLOCKS, ids=[f"line{start}" for start, _ in BLOCKS])
def test_readme_commands(checkout, start, lines):
    root, env, subs = checkout
    for line in lines:
        command = as_run(line, subs)
        if command is None:
            continue
        proc = _run(command, root, env)
        assert proc.returncode == 0, (f"README line {start}ff: {line}\nran: {command}\nexit {proc.returncode}\n"
                                      f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        assert "Traceback" not in proc.stderr, proc.stderr
        for shown_by, shown in SHOWN.items():
            if shown_by in command:
                assert re.search(shown, proc.stdout, re.M), (line, proc.stdout)


def test_readme_python(checkout):
    """The Python example (after the commands that make its artifact) prints what the README
    says it prints: top-2 (class name, probability) pairs for 4 images, and (4, 10)."""
    root, env, _ = checkout
    code, = python_blocks()
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    top = ast.literal_eval(first)
    assert len(top) == 4 and all(len(row) == 2 and isinstance(row[0][0], str) for row in top), first
    assert top[0][0][0] == "7" and second == "(4, 10)", proc.stdout
