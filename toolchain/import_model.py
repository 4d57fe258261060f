"""`edgecnn import MODEL --dataset D --out RUN_DIR`: a model edgecnn did not train,
made into a run folder that `export` and `pipeline` take like any other.

MODEL is a Keras 3 `.keras` file, loaded in Keras's safe mode (a Lambda layer's code
never runs); a PyTorch entry point `package.module:factory` (user code: importing it
runs it) that returns an nn.Module, with `--weights FILE.safetensors` when the factory
does not load its own; a `.pt2` program (torch.export.save), or an `.onnx` file.

A Keras model or an nn.Module made of edgecnn's graph vocabulary is read as the graph
(keras_import.py, torch_import.py). The run folder then holds the graph (spec.json), the
graph's own twin in the model's framework with the model's weights, and in run.json
where it came from and how closely the twin reproduces it, measured on the dataset's
first test images. Every format is then made through the weight bridge, as for a
trained run.

Any other model is kept in its own framework (native.py): the .keras, .pt2 or .onnx
file itself, or for an entry point the module exported with torch.export and proven
against it. Export then makes what that framework's converters can make and lists the
rest with the reason. Either way the dataset calibrates int8 and is the fp32 reference.
"""
from __future__ import annotations

import importlib
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.special import softmax

from edgecnn.converters import bridge
from edgecnn.runtime.evaluate import scale

from . import data, keras_import, models, native, outdir, preprocess, torch_import, zoo
from .errors import BadInput, brief
from .inspect import shape_text
from .runs import load_keras_file
from .vocabulary import NotVocabulary
from .train import FRAMEWORKS, RUN_SCHEMA, evaluate_logits, versions

SUFFIXES = tuple(Path(name).suffix for name in native.FILES.values())
ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
GRAPH = "edgecnn graph"  # run.json imported.read_as of a model read as the graph (else native.READ_AS)
PROOF_IMAGES = 256
TOLERANCE = 1e-4


def _load_entry_point(entry: str, weights: Path | None):
    """The nn.Module that `package.module:factory` returns, with --weights loaded into it
    (safetensors: no pickle). The module is imported from the current folder too."""
    import torch
    module_name, factory_name = entry.split(":")
    saved = sys.path[:]
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's code may raise anything while importing
        raise BadInput(f"{entry}: cannot import {module_name} ({brief(e)})") from None
    finally:
        sys.path[:] = saved
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise BadInput(f"{entry}: {module_name} has no function {factory_name}")
    try:
        model = factory()
    except Exception as e:
        raise BadInput(f"{entry}: {factory_name}() failed ({brief(e)})") from None
    if not isinstance(model, torch.nn.Module):
        raise BadInput(f"{entry}: {factory_name}() returned a {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            model.load_state_dict(load_file(str(weights)))
        except (SafetensorError, RuntimeError, OSError) as e:
            raise BadInput(f"{weights}: cannot load the weights into {factory_name}() ({brief(e)})") from None
    return model.eval()


def _class_names(names: str | None, ds, units: int, what: str) -> list[str]:
    classes = [c.strip() for c in names.split(",")] if names else list(ds.classes)
    if names and (len(set(classes)) != len(classes) or not all(classes)):
        raise BadInput("--classes: the names must be distinct and not empty")
    if units != len(classes):
        raise BadInput(f"{what}: its output has {units} values, not one logit per class of "
                       f"{'--classes' if names else 'dataset ' + repr(ds.name)} ({len(classes)})")
    if len(classes) != ds.num_classes:
        raise BadInput(f"--classes names {len(classes)} classes; the dataset has {ds.num_classes}")
    return classes


def _refuse_shape(what, shape_hwc, ds):
    raise BadInput(f"{what}: it takes {shape_text(shape_hwc) if shape_hwc else 'unknown'} images; dataset "
                   f"{ds.name!r} has {shape_text(ds.input_shape)}")


class _Keras:
    framework, kind = "tf", "keras"
    run = staticmethod(bridge.keras_logits)

    def __init__(self, path: Path, ds):
        self.path = path
        self.model = load_keras_file(path)
        shape = tuple(self.model.inputs[0].shape[1:]) if getattr(self.model, "inputs", None) else None
        # a None dimension (a fully convolutional model) takes any size
        if shape is None or len(shape) != 3 or any(d is not None and d != want
                                                   for d, want in zip(shape, ds.input_shape)):
            _refuse_shape(path, shape, ds)

    def keep(self, folder: Path) -> None:
        """The model in its own framework's file in the run folder: the file itself."""
        shutil.copyfile(self.path, folder / native.FILES[self.framework])

    def read(self, reserved):
        return keras_import.to_nodes(self.model, reserved)

    def twin(self, spec, sources):
        twin = models.build_keras(spec)
        keras_import.copy_weights(self.model, twin, sources)
        return twin



class _Torch:
    framework, kind = "torch", "pytorch entry point"
    run = staticmethod(bridge.torch_logits)

    def __init__(self, entry: str, weights: Path | None, ds):
        self.model = _load_entry_point(entry, weights)
        self.shape = ds.input_shape

    def keep(self, folder: Path) -> None:
        """The module exported with torch.export, with a dynamic batch (the import then
        proves the saved program against the module)."""
        import torch
        h, w, c = self.shape
        example = torch.zeros(2, c, h, w)
        try:
            program = torch.export.export(self.model, (example,),
                                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
            torch.export.save(program, str(folder / native.FILES[self.framework]))
        except Exception as e:  # torch.export raises many types for code it cannot capture
            raise BadInput(f"torch.export cannot capture the module ({brief(e, 200)})") from None

    def read(self, reserved):
        return torch_import.to_nodes(self.model, reserved)

    def twin(self, spec, sources):
        twin = models.build_torch(spec).eval()
        try:
            torch_import.copy_weights(self.model, twin, sources)
        except RuntimeError as e:  # a tensor of another shape than the graph derives
            raise BadInput(f"cannot copy the weights into edgecnn's graph ({brief(e)})") from None
        return twin


class _Kept:
    """A .pt2 program or an ONNX file: kept as it is, never read as a graph."""

    def __init__(self, path: Path, ds):
        self.path = path
        self.framework = native.framework_of(path)
        if self.framework == "torch":
            self.kind = "torch.export program"
            program = native.load_program(path)
            c, h, w = native.program_input(program, path)
            self.model = native.program_module(program)
            if (h, w, c) != tuple(ds.input_shape):
                _refuse_shape(path, (h, w, c), ds)
        else:
            self.kind = "ONNX file"
            spec = native.onnx_runner(path).input_spec
            dims = list(spec.shape[1:])
            hwc = dims if spec.layout == "NHWC" else dims[1:] + dims[:1]
            # a symbolic (dynamic) dimension reads as -1: any size fits it
            if len(hwc) != 3 or any(d > 0 and d != want for d, want in zip(hwc, ds.input_shape)):
                _refuse_shape(path, tuple(hwc) if len(hwc) == 3 else None, ds)
            self.model = path

    def run(self, model, x):
        return native.logits(native.KINDS[self.framework], model, x)

    def read(self, reserved):
        raise NotVocabulary(f"a {self.kind} is kept as it is, not read as edgecnn's graph")

    def keep(self, folder: Path) -> None:
        dest = folder / native.FILES[self.framework]
        if self.framework == "torch":
            shutil.copyfile(self.path, dest)
            return
        import onnx  # an ONNX file's weights may lie beside it (external data): saved as one file
        try:
            onnx.save(onnx.load(str(self.path)), str(dest))
        except Exception as e:  # onnx raises several types for missing or unsafe external data
            raise BadInput(f"{self.path}: cannot read its weights ({brief(e)})") from None


def import_model(model, dataset: str, out, data_dir=None, classes: str | None = None, force: bool = False,
                 divide_by=None, mean=None, std=None, weights=None) -> dict:
    """`model`: a .keras file or a `package.module:factory` entry point (with `weights`,
    a .safetensors file, or none). `divide_by`, `mean`, `std`: the preprocessing the
    model was trained with, over what a TOML beside the file says (MODEL.toml, or
    WEIGHTS.toml for an entry point; preprocess.declared); divide by 255 when nothing says."""
    text = str(model)
    entry = ENTRY_POINT.match(text) and not Path(text).exists()
    path = None if entry else Path(text)
    if entry:
        weights = Path(weights) if weights else None
        if weights is not None and not weights.is_file():
            raise BadInput(f"{weights}: no such weights file")
        what = text
    else:
        if weights:
            raise BadInput("--weights goes with a module:factory entry point; a model file holds its own")
        if path.suffix.lower() not in SUFFIXES:
            raise BadInput(f"{path}: edgecnn imports {', '.join(SUFFIXES)} files and PyTorch module:factory entry "
                           f"points; {path.suffix or 'suffix-less'} files are not supported yet")
        if not path.is_file():
            raise BadInput(f"{path}: no such model file")
        what = str(path)
    out = Path(out)
    outdir.check_free(out, force, "run folder")
    scaling = preprocess.declared(path or weights, divide_by, mean, std)
    ds = data.load(dataset, data_dir)
    preprocess.check(scaling, ds.input_shape[2], "the preprocessing")
    source = (_Torch(text, weights, ds) if entry else _Keras(path, ds) if native.framework_of(path) == "tf"
              else _Kept(path, ds))
    from .torch_net import RESERVED  # names the PyTorch twin cannot give a submodule
    try:
        nodes, sources, dropped_softmax = source.read(RESERVED)
    except NotVocabulary as e:
        return _import_native(source, str(e), what, path, weights, entry and text, ds, dataset, data_dir,
                              classes, scaling, out, force)
    output = models.ModelSpec(arch=zoo.CUSTOM, input_shape=ds.input_shape, classes=list(ds.classes),
                              nodes=nodes, source=Path(what).name).graph.output_shape
    if len(output) != 1:
        raise BadInput(f"{what}: its output is a {shape_text(output)} feature map, not one logit per class")
    units = int(output[0])
    spec = models.ModelSpec(arch=zoo.CUSTOM, input_shape=ds.input_shape,
                            classes=_class_names(classes, ds, units, what), scaling=scaling,
                            nodes=nodes, source=Path(what).name)
    models.check(spec)
    twin = source.twin(spec, sources)

    x_test = scale(ds.x_test, scaling)
    probe = x_test[:PROOF_IMAGES]
    want = _run_user_model(source.run, source.model, probe, what)
    diff = _proof(want, source.run(twin, probe), dropped_softmax, what, "edgecnn's graph of it")
    metrics = evaluate_logits(source.run(twin, x_test), ds.y_test, spec.classes)
    origin = _origin(source, GRAPH, path, weights, entry and text, probe, diff, dropped_softmax,
                     final_softmax_dropped=dropped_softmax)
    with outdir.staged(out, force, "run folder") as tmp:
        trainer = importlib.import_module(f"{__package__}.{FRAMEWORKS[source.framework]}")
        weights_file = trainer.Trained(twin, spec).save(tmp)  # as training saves its model
        run = _write_run(tmp, source, dataset, data_dir, weights_file, spec.graph.count_params(),
                         spec.graph.macs(), zoo.CUSTOM, origin, spec.to_json(), metrics)
    return {"run_dir": str(out), "model": Path(what).name, "framework": source.framework, "dataset": run["dataset"],
            "read_as": GRAPH, "layers": len(nodes), "params": run["params"], "macs": run["macs"],
            "test_accuracy": metrics["test_accuracy"], "final_softmax_dropped": dropped_softmax, "max_abs_diff": diff}


def _import_native(source, why, what, path, weights, entry, ds, dataset, data_dir, classes, scaling, out,
                   force) -> dict:
    """A model outside the vocabulary, kept in its own framework's file (native.py):
    reloaded from the run folder as export will load it, and proven against the model."""
    x_test = scale(ds.x_test, scaling)
    probe = x_test[:PROOF_IMAGES]
    want = _run_user_model(source.run, source.model, probe, what)
    with outdir.staged(out, force, "run folder") as tmp:
        source.keep(tmp)
        file = native.FILES[source.framework]
        kind, kept = native.load(source.framework, tmp / file)
        saved = lambda m, x: native.logits(kind, m, x)  # noqa: E731  as export runs it
        diff = _proof(want, _run_user_model(saved, kept, probe, what), False, what, "the saved model")
        spec = native.Spec(ds.input_shape, _class_names(classes, ds, int(want.shape[1]), what), scaling,
                           Path(what).name)
        metrics = evaluate_logits(_run_user_model(saved, kept, x_test, what), ds.y_test, spec.classes)
        origin = _origin(source, native.READ_AS, path, weights, entry, probe, diff, False, outside_vocabulary=why)
        run = _write_run(tmp, source, dataset, data_dir, file, native.count_params(kind, kept), None,
                         native.ARCH, origin, spec.to_json(), metrics)
    return {"run_dir": str(out), "model": Path(what).name, "framework": source.framework, "dataset": run["dataset"],
            "read_as": native.READ_AS, "outside_vocabulary": why, "layers": None, "params": run["params"],
            "macs": None, "test_accuracy": metrics["test_accuracy"], "final_softmax_dropped": False,
            "max_abs_diff": diff}


def _run_user_model(run, model, probe, what) -> np.ndarray:
    """`run(model, probe)`, where anything it raises is the model's fault: one line."""
    try:
        return run(model, probe)
    except Exception as e:  # the user's model (or code) may raise anything
        raise BadInput(f"{what}: running it on {len(probe)} images failed ({brief(e)})") from None


def _proof(want, got, dropped_softmax, what, made) -> float:
    """Max abs difference between the user's model and what edgecnn made of it; BadInput
    past TOLERANCE."""
    if want.ndim != 2:
        raise BadInput(f"{what}: its output is a {shape_text(want.shape[1:])} array per image, not one logit "
                       f"per class")
    if want.shape != got.shape:
        raise BadInput(f"{what}: its output is {shape_text(want.shape[1:])} per image, where {made} "
                       f"gives {shape_text(got.shape[1:])}; it was not imported")
    diff = float(np.abs((softmax(got, axis=1) if dropped_softmax else got) - want).max())
    if not diff <= TOLERANCE:  # NaN fails too
        raise BadInput(f"{what}: {made} differs from the model by {diff:.2e} "
                       f"(tolerance {TOLERANCE:g}) on {len(want)} test images; it was not imported")
    return diff


def _origin(source, read_as, path, weights, entry, probe, diff, dropped_softmax, **extra) -> dict:
    """run.json `imported`: what the model was, where it came from, and the proof."""
    origin = {"format": source.kind, "read_as": read_as, **extra,
              "proof": {"images": int(len(probe)), "max_abs_diff": diff, "tolerance": TOLERANCE,
                        "compared": "softmax of the graph's logits" if dropped_softmax else "outputs"}}
    for key, file in (("file", path), ("weights", weights)):
        if file is not None:
            origin[key] = str(file.resolve())
            origin[f"{key}_sha256"], = outdir.file_digests(file, "sha256")
    if entry:
        origin["entry_point"] = entry
    return origin


def _write_run(tmp, source, dataset, data_dir, weights_file, params, macs, arch, origin, spec_json,
               metrics) -> dict:
    run = {
        "schema": RUN_SCHEMA, "framework": source.framework, "dataset": data.canonical_name(dataset),
        "data_dir": str(Path(data_dir).resolve()) if data_dir else None, "weights": weights_file,
        "params": params, "macs": macs, "seed": 0, "epochs": None,
        "model": arch, "imported": origin, "versions": versions(source.framework),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    outdir.write_json(tmp / "run.json", run)
    outdir.write_json(tmp / "spec.json", spec_json)
    outdir.write_json(tmp / "metrics.json", metrics)
    return run
