"""Models kept in their own framework: what `edgecnn import` makes of a model that is not
made of edgecnn's graph vocabulary (or that, like a .pt2 program or an ONNX file, is not
read as a graph), and how export reads it back.

The run folder holds the model in its framework's own file (FILES), loaded without the
user's code: a .keras file in Keras's safe mode, a torch.export program with every
tensor read as weights only, an ONNX file through ONNX Runtime. Export then makes what
each converter can make from that kind of model (converters.not_native says what it
cannot, and why); there is no weight bridge, so there is no numpy file and no graph.
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.converters import bridge
from edgecnn.runtime import ArtifactError, runner_for

from . import preprocess
from .errors import BadInput, brief

READ_AS = "its own framework"  # run.json imported.read_as for these runs
ARCH = "native"  # spec.json arch
FILES = {"tf": "model.keras", "torch": "model.pt2", "onnx": "model.onnx"}  # run framework -> file
KINDS = {"tf": "keras", "torch": "torch", "onnx": "onnx"}  # run framework -> converters' native kind


def framework_of(path) -> str | None:
    """The framework whose own file `path` is, by its suffix (FILES)."""
    suffix = Path(path).suffix.lower()
    return next((fw for fw, name in FILES.items() if Path(name).suffix == suffix), None)


@dataclass
class Spec:
    """spec.json of a native run: what the model takes and answers, no graph."""
    input_shape: tuple[int, int, int]  # H, W, C
    classes: list[str]
    scaling: dict = field(default_factory=lambda: dict(preprocess.DEFAULT))
    source: str | None = None
    arch = ARCH   # class constants, not fields: what code that reads any spec asks
    graph = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict:
        return {"arch": self.arch, "input_shape": list(self.input_shape), "classes": list(self.classes),
                "scaling": dict(self.scaling), "source": self.source}

    @classmethod
    def from_json(cls, d: dict, where) -> "Spec":
        try:
            shape = tuple(int(v) for v in d["input_shape"])
            classes = [str(c) for c in d["classes"]]
            if len(shape) != 3 or min(shape) < 1 or len(classes) < 2:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise BadInput(f"{where}: spec.json has no valid input_shape and classes") from None
        scaling = d.get("scaling") or dict(preprocess.DEFAULT)
        preprocess.check(scaling, shape[2], f"{where}: spec.json scaling")
        return cls(shape, classes, scaling, d.get("source"))


def program_module(program):
    """A torch.export program as an nn.Module that export's converters and the bridge can
    deep-copy, put in eval mode, trace and freeze (the program's own module refuses
    train() and eval(): its graph was captured once, in one mode, and has no other)."""
    import torch

    class Program(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.program = program.module()

        def train(self, mode: bool = True):
            for m in self.modules():  # the flag only: nothing in a captured graph reads it
                m.training = mode
            return self

        def forward(self, x):
            return self.program(x)
    return Program()


def _check_archive(path: Path) -> None:
    """A .pt2 archive that holds only a graph and tensors: compiled code (AOTInductor,
    ExecuTorch, MTIA payloads) is refused, and so is any constant that its config says is
    not a tensor (torch unpickles those with pickle.loads). Written here because
    torch.export.load checks neither."""
    from torch.export.pt2_archive import constants as pt2
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if len(set(names)) != len(names):  # readers may disagree on which copy counts
                raise BadInput(f"{path}: it holds two members of the same name; refusing it")
            objects = [n for n in names if Path(n).name.startswith((pt2.CUSTOM_OBJ_FILENAME_PREFIX,
                                                                    pt2.OPAQUE_OBJ_FILENAME_PREFIX))]
            if objects:
                raise BadInput(f"{path}: it holds Python objects that only pickle can load ({Path(objects[0]).name}); "
                               f"edgecnn loads programs made of a graph and tensors only")
            compiled = [n for n in names
                        if any(f"/{d.rstrip('/')}" in f"/{n}" for d in (pt2.AOTINDUCTOR_DIR, pt2.EXECUTORCH_DIR,
                                                                       pt2.MTIA_DIR))]
            if compiled:
                raise BadInput(f"{path}: it holds compiled code ({compiled[0]}); edgecnn loads programs made of "
                               f"a graph and tensors only")
            suffix = pt2.CONSTANTS_CONFIG_FILENAME_FORMAT.split("{}")[-1]
            for name in names:
                if f"/{pt2.CONSTANTS_DIR}" in f"/{name}" and name.endswith(suffix):
                    config = json.loads(z.read(name)).get("config", {})
                    for payload in config.values():
                        if not str(payload.get("path_name", "")).startswith(pt2.TENSOR_CONSTANT_FILENAME_PREFIX):
                            raise BadInput(f"{path}: it holds Python objects that only pickle can load "
                                           f"({payload.get('path_name')}); edgecnn loads programs made of a "
                                           f"graph and tensors only")
    except (zipfile.BadZipFile, OSError, ValueError, AttributeError, NotImplementedError,
            RuntimeError) as e:  # ValueError: bad JSON; the last two: compression, encryption
        raise BadInput(f"{path}: cannot read the program ({brief(e)})") from None


def load_program(path: Path):
    """A .pt2 file (torch.export.save) loaded without unpickling anything but tensors:
    the archive is checked first (_check_archive), and every tensor torch reads is read
    with weights_only (TORCH_FORCE_WEIGHTS_ONLY_LOAD)."""
    import torch
    _check_archive(path)
    flags = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")  # torch refuses both set
    saved = {k: os.environ.pop(k, None) for k in flags}
    os.environ[flags[0]] = "1"
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # torch raises many types for a bad archive
        raise BadInput(f"{path}: cannot load the program ({brief(e)})") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return program


def program_input(program, path) -> tuple[int, ...]:
    """The NCHW image shape a program takes, (C, H, W); its batch must be dynamic."""
    user = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(user) != 1:
        raise BadInput(f"{path}: the program takes {len(user)} inputs, not one image batch")
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user[0])
    shape = tuple(node.meta["val"].shape) if "val" in node.meta else ()
    if len(shape) != 4:
        raise BadInput(f"{path}: the program takes a {len(shape)}-dimensional input, not a batch of images")
    if isinstance(shape[0], int):
        raise BadInput(f"{path}: the program's batch size is fixed at {shape[0]}; export it with "
                       f"dynamic_shapes={{0: Dim('batch')}} so that it runs on batches")
    if not all(isinstance(d, int) for d in shape[1:]):
        raise BadInput(f"{path}: the program's image size is not fixed")
    return tuple(int(d) for d in shape[1:])


def onnx_runner(path: Path):
    """An ONNX file loaded in ONNX Runtime (no pickle: protobuf only)."""
    try:
        return runner_for("onnx", path).load()
    except ArtifactError as e:
        raise BadInput(f"{path}: {e}") from None


def load(framework: str, path: Path):
    """(converters' kind, the model) from a native run folder's file."""
    from .runs import load_keras_file
    kind = KINDS[framework]
    if kind == "keras":
        return kind, load_keras_file(path)
    if kind == "torch":
        return kind, program_module(load_program(path))
    onnx_runner(path)
    return kind, path


def logits(kind: str, model, x_nhwc: np.ndarray, batch: int = 1000) -> np.ndarray:
    if kind != "onnx":
        return bridge.logits(kind, model, x_nhwc)
    runner = onnx_runner(model)
    step = batch if runner.batchable else 1  # a file with a fixed batch of one
    return np.concatenate([runner.infer(x_nhwc[i:i + step]) for i in range(0, len(x_nhwc), step)])


def count_params(kind: str, model) -> int:
    if kind == "keras":
        return int(model.count_params())
    if kind == "torch":
        return int(sum(p.numel() for p in model.parameters()))
    import onnx
    return int(sum(int(np.prod(t.dims)) for t in onnx.load(str(model)).graph.initializer))
