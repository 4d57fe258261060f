"""The ExecuTorch runtime (.pte), through its compiled Python bindings.

They are driven as `executorch.extension.pybindings._C`, the extension that
`executorch.runtime` and `portable_lib` wrap and re-export: those wrappers import
the exporter (executorch.exir, with torchao and triton) on the way, 6.6 s here against
1.4 s for torch and the bindings alone, and far longer on an emulated Pi, which then
needs the exporter's whole dependency tree as well.

A .pte is a flatbuffer program: the parts its backend (XNNPACK) took are one delegate
call each, and what it did not take runs as ExecuTorch's portable kernels, one
operator at a time and far slower (models.md measured 10.4 ms against 0.068 ms for the
same model). `op_counts` reads the program's own instructions from the file, so the
delegate calls and any portable operator show, and `concerns` says when there are any.

The file fixes its input shape (batch 1, as a device runs it): larger batches are run
one image at a time. The runtime's thread pool (its own, not torch's; 2 threads unless
set) is set to the runner's thread count when a file is loaded.
"""
from __future__ import annotations

from collections import Counter
from importlib import metadata

import numpy as np

from .evaluate import nchw
from .quiet import quiet
from .runner import Runner, RuntimeMissing, TensorSpec

# the program's own dtype codes (ExecuTorch's ScalarType) that an image classifier uses
_DTYPES = {6: "float32", 1: "int8", 0: "uint8"}
DELEGATED = " (delegate)"  # an op_counts key for a backend's calls ends so


def program_ops(data: bytes) -> dict[str, int]:
    """A .pte program's instructions by kind, read from its bytes: a delegate call is
    named by its backend (ending in DELEGATED), a kernel call by the portable operator it runs."""
    with quiet():  # the exporter's import prints torchao's notes on extensions it skips, on both fds
        from executorch.exir._serialize._program import deserialize_pte_binary
    plan = deserialize_pte_binary(data).program.execution_plan[0]
    counts: Counter = Counter()
    for chain in plan.chains:
        for instruction in chain.instructions:
            args = instruction.instr_args
            if hasattr(args, "delegate_index"):
                counts[plan.delegates[args.delegate_index].id + DELEGATED] += 1
            elif hasattr(args, "op_index"):
                counts[plan.operators[args.op_index].name] += 1
    return dict(counts)


class ExecuTorchRunner(Runner):
    format = "pte"
    suffix = ".pte"
    title = "ExecuTorch"
    marker = "D"
    wheel = "executorch"
    emulated_extra = "torch"  # the bindings need torch's libraries
    precision_hidden = "a delegate's operators and tensors are inside its own blob"
    runtime = "ExecuTorch"
    package = "executorch"
    hint = "pip install executorch==1.5.1"
    # the bindings, and the file reader behind op_counts (inspect), which is the exporter's
    preload = ("executorch.extension.pybindings._C", "executorch.exir._serialize._program")

    @classmethod
    def _runtime(cls):
        try:
            import torch  # first: the bindings link against the libraries torch loads
            from executorch.extension.pybindings import _C
            version = metadata.version("executorch")
        except ImportError:
            raise RuntimeMissing(cls.runtime, cls.hint) from None
        cls.torch = torch
        return _C, f"executorch {version}"

    def _program(self):
        """The program, read from the file by ExecuTorch's own loader, which the program
        owns (from bytes, they would have to outlive every method and tensor of it)."""
        return self.lib._load_program(str(self.path), program_verification=self.lib.Verification.InternalConsistency)

    def _load_impl(self):
        self.lib._unsafe_reset_threadpool(self.threads)
        self.program = self._program()
        names = [self.program.get_method_name(i) for i in range(self.program.num_methods())]
        if "forward" not in names:
            raise ValueError(f"it has no forward method, only {sorted(names)}")
        self.method = self.program.load_method("forward")
        meta = self.method.method_meta()
        if meta.num_inputs() != 1 or meta.num_outputs() != 1:
            raise ValueError(f"its forward takes {meta.num_inputs()} inputs and gives {meta.num_outputs()} "
                             f"outputs, not one image batch and one logits tensor")
        self._in, self._out = meta.input_tensor_meta(0), meta.output_tensor_meta(0)
        if len(self._in.sizes()) != 4 or len(self._out.sizes()) != 2:
            raise ValueError(f"its input has shape {list(self._in.sizes())} and output {list(self._out.sizes())}, "
                             f"not an image batch and logits")

    @staticmethod
    def _spec(name, info, layout):
        return TensorSpec(name, list(info.sizes()), layout, _DTYPES.get(info.dtype(), f"ScalarType {info.dtype()}"))

    def _input_spec(self):
        return self._spec("input", self._in, "NCHW")

    def _output_spec(self):
        return self._spec("output", self._out, "NC")

    def _batchable_impl(self):
        return False  # the program's memory is planned for its one input shape

    def _prepare_impl(self, batch):
        return self.torch.from_numpy(nchw(batch))

    def _run_impl(self, x):
        return self.method((x,))[0]

    def _finish_impl(self, y):
        return y.numpy().astype(np.float32, copy=False)

    def minimal_loop(self, batch):
        program = self.load()._program()
        method, x = program.load_method("forward"), self._prepare_impl(batch)

        def once():  # holds the program: a method outlived by its program reads freed memory
            return method((x,))
        once.program = program
        return once

    def _op_counts_impl(self):
        return program_ops(self.path.read_bytes())

    def concerns(self) -> list[str]:
        portable = {k: v for k, v in self.op_counts().items() if not k.endswith(DELEGATED)}
        if not portable:
            return []
        return [f"{sum(portable.values())} operators run as ExecuTorch's portable kernels, outside any delegate "
                f"({', '.join(sorted(portable))}): these can be two orders of magnitude slower"]
