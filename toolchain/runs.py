"""Reading a run folder written by `edgecnn train`, and rebuilding its trained model."""
from __future__ import annotations

from pathlib import Path

from . import models, outdir
from .errors import BadInput

WEIGHTS = {"torch": "model.safetensors", "tf": "model.keras"}


class Run:
    def __init__(self, folder):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BadInput(f"run folder {self.folder} does not exist")
        self.info = self._json("run.json")
        self.spec = models.ModelSpec.from_json(self._json("spec.json"))
        self.metrics = self._json("metrics.json")
        self.framework = self.info.get("framework")
        if self.framework not in WEIGHTS:
            raise BadInput(f"run folder {self.folder}: run.json names unknown framework {self.framework!r}")
        self.weights = self.folder / WEIGHTS[self.framework]
        if not self.weights.is_file():
            raise BadInput(f"run folder {self.folder} is incomplete: {self.weights.name} is missing")

    def _json(self, name):
        p = self.folder / name
        if not p.is_file():
            raise BadInput(f"run folder {self.folder} is incomplete: {name} is missing")
        return outdir.read_json_object(p)

    @property
    def dataset(self) -> str:
        return self.info.get("dataset", "")

    def load_torch(self):
        """The trained PyTorch model; weights read with safetensors, never unpickled."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        model = models.build_torch(self.spec)
        try:
            model.load_state_dict(load_file(str(self.weights)))
        except (SafetensorError, RuntimeError, OSError) as e:
            raise BadInput(f"{self.weights}: cannot load the weights ({' '.join(str(e).split())[:200]})") from None
        return model.eval()

    def load_keras(self):
        """The trained Keras model, loaded with safe_mode (no arbitrary code)."""
        import keras
        try:
            return keras.saving.load_model(self.weights, safe_mode=True, compile=False)
        except Exception as e:  # Keras raises many types for a bad file
            raise BadInput(f"{self.weights}: cannot load the model ({' '.join(str(e).split())[:200]})") from None
