"""The NumPy runtime: runs an edgecnn NumPy network file (.npz, see npnet.py) with
nothing but NumPy, for devices where no ML runtime installs (32-bit ARM images, for
one) and as an independent float reference for fidelity checks."""
from __future__ import annotations

from collections import Counter

import numpy as np

from . import npnet
from .runner import ArtifactError, Runner, TensorSpec


CHUNK = 64  # images per forward pass


class NumpyRunner(Runner):
    format = "numpy"
    suffix = ".npz"
    title = "NumPy (.npz)"
    marker = "D"
    wheel = "numpy"
    runtime = "NumPy"
    package = "numpy"
    hint = "pip install numpy"

    def _load_impl(self):
        # numpy sizes its BLAS pool at import, from OPENBLAS_NUM_THREADS and the like: the
        # targets set those from --threads before they start the harness
        try:
            self.net = npnet.load(self.path)
        except npnet.ModelFileError as e:
            raise ArtifactError(f"{self.path.name}: not an edgecnn NumPy network ({e})") from None
        self.meta = self.net.config()

    def _input_spec(self):
        i = self.meta["input"]
        return TensorSpec(i["name"], list(i["shape"]), i["layout"], i["dtype"])

    def _output_spec(self):
        o = self.meta["output"]
        return TensorSpec(o["name"], list(o["shape"]), o["layout"], o["dtype"])

    def _prepare_impl(self, batch):
        if batch.shape[1:] != self.net.input_shape:
            raise ArtifactError(f"{self.path.name} takes {'x'.join(map(str, self.net.input_shape))} inputs, "
                                f"got {'x'.join(map(str, batch.shape[1:]))}")
        return batch

    def _run_impl(self, x):
        if len(x) <= CHUNK:
            return self.net.forward(x)
        # a big batch goes through in chunks: the im2col buffers stay small (about 14 MB
        # for 64 MNIST images), as on a device with little memory they must
        return np.concatenate([self.net.forward(x[i:i + CHUNK]) for i in range(0, len(x), CHUNK)])

    def _finish_impl(self, y):
        return y.astype(np.float32, copy=False)

    def minimal_loop(self, batch):
        net = npnet.load(self.path)
        return lambda: net.forward(batch)

    def _op_counts_impl(self):
        return dict(Counter(layer.kind for layer in self.net.layers))
