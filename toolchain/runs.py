"""Reading a run folder written by `edgecnn train`, and rebuilding its trained model."""
from __future__ import annotations

from pathlib import Path

from . import layout, models, native, outdir
from .errors import BadInput, brief

WEIGHTS = {"torch": "model.safetensors", "tf": native.FILES["tf"], "numpy": "model.npz"}
TWIN = {"torch": "torch", "tf": "keras", "numpy": "numpy"}  # framework -> its twin in the weight bridge


def load_keras_file(path: Path):
    """A .keras file loaded in safe mode: a Lambda layer's code is refused, never run."""
    import keras
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many types for a bad file
        if "safe_mode" in str(e):
            raise BadInput(f"{path}: cannot load the model: it holds Python code (a Lambda layer), "
                           f"which Keras's safe mode refuses to run") from None
        raise BadInput(f"{path}: cannot load the model ({brief(e)})") from None


class Run:
    def __init__(self, folder):
        self.folder = Path(folder)
        wrong = layout.hint(self.folder, "export")
        if wrong:
            raise BadInput(wrong)
        if not self.folder.is_dir():
            raise BadInput(f"run folder {self.folder} does not exist")
        self.info = self._json("run.json")
        imported = self.info.get("imported")
        # a model kept in its own framework (native.py), or edgecnn's graph
        self.native = isinstance(imported, dict) and imported.get("read_as") == native.READ_AS
        files = native.FILES if self.native else WEIGHTS
        self.spec = (native.Spec.from_json(self._json("spec.json"), self.folder) if self.native else
                     models.ModelSpec.from_json(self._json("spec.json"), imported=isinstance(imported, dict)))
        self.metrics = self._json("metrics.json")
        self.framework = self.info.get("framework")
        if not isinstance(self.framework, str) or self.framework not in files:
            raise BadInput(f"run folder {self.folder}: run.json names no known framework "
                           f"({', '.join(files)})")
        self._check_fields()
        self.weights = self.folder / files[self.framework]
        if not self.weights.is_file():
            raise BadInput(f"run folder {self.folder} is incomplete: {self.weights.name} is missing")

    def _json(self, name):
        p = self.folder / name
        if not p.is_file():
            raise BadInput(f"run folder {self.folder} is incomplete: {name} is missing")
        return outdir.read_json_object(p)

    def _check_fields(self) -> None:
        """What export reads from run.json and metrics.json has the type it expects."""
        def bad(what):
            raise BadInput(f"run folder {self.folder}: {what}")
        info = self.info
        if not (isinstance(info.get("dataset"), str) and info["dataset"]):
            bad("run.json names no dataset")
        if not (type(info.get("seed", 0)) is int and info.get("seed", 0) >= 0):
            bad("run.json seed is not a whole number of 0 or more")
        if not isinstance(info.get("data_dir"), (str, type(None))):
            bad("run.json data_dir is not a path")
        size = info.get("resize")
        if not (size is None or (isinstance(size, list) and len(size) == 2
                                 and all(type(d) is int and 0 < d <= 4096 for d in size))):
            bad("run.json resize is not [height, width]")
        if not (info.get("epochs") is None or type(info["epochs"]) is int):
            bad("run.json epochs is not a whole number")
        accuracy = self.metrics.get("test_accuracy")
        if not (accuracy is None or (type(accuracy) in (int, float) and 0 <= accuracy <= 1)):
            bad("metrics.json test_accuracy is not a fraction")

    @property
    def dataset(self) -> str:
        return self.info["dataset"]

    @property
    def seed(self) -> int:
        return self.info.get("seed", 0)

    @property
    def data_dir(self) -> str | None:
        return self.info.get("data_dir")

    @property
    def resize(self) -> tuple[int, int] | None:
        size = self.info.get("resize")
        return tuple(size) if size else None

    def load_torch(self):
        """The trained PyTorch model; weights read with safetensors, never unpickled."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        model = models.build_torch(self.spec)
        try:
            state = load_file(str(self.weights))
        except (SafetensorError, RuntimeError, OSError) as e:
            raise BadInput(f"{self.weights}: cannot load the weights ({brief(e)})") from None
        self._same_weights({k: tuple(v.shape) for k, v in state.items()},
                           {k: tuple(v.shape) for k, v in model.state_dict().items()})
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise BadInput(f"{self.weights}: cannot load the weights ({brief(e)})") from None
        return model.eval()

    def _same_weights(self, have: dict, want: dict) -> None:
        """The file's weights (name -> shape) are the spec's, or one line naming the first
        that differs."""
        if have == want:
            return
        name = next(k for k in [*want, *have] if have.get(k) != want.get(k))
        detail = (f"{have[name]} in the file, {want[name]} in the spec" if name in have and name in want
                  else "only in the spec" if name in want else "only in the file")
        raise BadInput(f"{self.weights}: it is not the {self.spec.arch} network that spec.json describes "
                       f"({name}: {detail})")

    def load_numpy(self):
        """The trained NumPy network; its .npz is read without pickle, and it must be the
        network that spec.json describes."""
        from edgecnn.runtime import npnet
        try:
            net = npnet.load(self.weights)
        except npnet.ModelFileError as e:
            raise BadInput(f"{self.weights}: cannot load the weights ({e})") from None
        if (net.input_shape != tuple(self.spec.input_shape)
                or net.graph.to_json() != self.spec.graph.to_json()):
            raise BadInput(f"{self.weights}: its layers are not the {self.spec.arch} that spec.json describes")
        return net

    @property
    def params(self) -> int | None:
        return self.info.get("params") if self.native else self.spec.graph.count_params()

    @property
    def macs(self) -> int | None:
        return None if self.native else self.spec.graph.macs()

    def load_twin(self):
        """(twin kind, trained model) for the weight bridge; for a native run, (the
        converters' native kind, the model in its own framework)."""
        if self.native:
            return native.load(self.framework, self.weights)
        kind = TWIN[self.framework]
        return kind, {"torch": self.load_torch, "keras": self.load_keras, "numpy": self.load_numpy}[kind]()

    def load_keras(self):
        """The trained Keras model, loaded with safe_mode (no arbitrary code). It must be
        the network that spec.json describes: the same weights by name and shape, and the
        same answers as the spec's own Keras twin holding them."""
        import numpy as np
        loaded = load_keras_file(self.weights)
        twin = models.build_keras(self.spec)
        by_path = {w.path: w for w in getattr(loaded, "weights", [])}
        self._same_weights({k: tuple(w.shape) for k, w in by_path.items()},
                           {w.path: tuple(w.shape) for w in twin.weights})
        for w in twin.weights:
            w.assign(by_path[w.path])
        probe = np.random.default_rng(0).random((4, *self.spec.input_shape), dtype=np.float32)
        if not np.allclose(loaded(probe, training=False), twin(probe, training=False), atol=1e-5):
            raise BadInput(f"{self.weights}: it is not the {self.spec.arch} network that spec.json describes: "
                           f"its weights fit, but its layers compute something else")
        return twin
