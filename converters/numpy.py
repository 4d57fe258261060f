"""The NumPy network file (.npz) from the NumPy twin: its parameters and the JSON list of
its layers, written by edgecnn.runtime.npnet and run by runtime/numpyrt.py with nothing
but NumPy. fp32 only: the file is the weights themselves, so there is nothing to
convert; the twin came through the weight bridge when the run was PyTorch or Keras."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import NATIVE_KINDS

TWIN = "numpy"
REQUIRES = (("numpy",),)
DEFAULT = False  # edgecnn's own file: exported when asked for by name
PRECISIONS = ("fp32",)
LAYOUT = "NHWC"
NATIVE: dict = {}  # the file is edgecnn's graph itself
NOT_NATIVE = dict.fromkeys(NATIVE_KINDS, "the NumPy format holds edgecnn's graph, and this model is outside "
                                         "its vocabulary")


def export(net, precision: str, calib: np.ndarray, path: Path, options: dict) -> dict:
    net.save(path)
    return {"converter": "edgecnn.runtime.npnet (numpy.savez)", "versions": {"numpy": np.__version__},
            "layout": LAYOUT, "notes": {"layers": len(net.layers)}}
