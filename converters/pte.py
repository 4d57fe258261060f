"""ExecuTorch (.pte) from the PyTorch twin: captured with torch.export, lowered to the
XNNPACK delegate, and serialized for the ExecuTorch runtime. fp32 keeps float weights
(BatchNorm folded by the lowering); int8 is PT2E post-training quantization with
ExecuTorch's XNNPACK quantizer: symmetric int8 weights ([-127, 127], one scale per
output channel or per layer) and int8 activations, their ranges observed on the
calibration images.

XNNPACK's int8 kernels accumulate in int32 on every CPU (they do not add u8 x s8 pairs
into a saturating int16, as x86 kernels without VNNI do), which is why TFLite's int8,
also XNNPACK's, gives the same answers on every host with full 8-bit weights.

Whatever the delegate does not take stays as ExecuTorch's portable kernels, which run far
slower: the manifest's notes list them, read from the file as the runner reads it (none
for edgecnn's graph vocabulary), and `inspect` warns about them (runtime/etrt.py)."""
from __future__ import annotations

import copy
from importlib import metadata
from pathlib import Path

import numpy as np

from edgecnn.runtime.etrt import DELEGATED, program_ops
from edgecnn.runtime.evaluate import nchw

from . import CALIBRATION, FLOAT_LAYERS, GRANULARITIES, ROUNDER, granularity, rounded_by

TWIN = "torch"
REQUIRES = (("torch",), ("executorch",))
# asked for by name (--formats pte): an export costs about 10 s per artifact, and
# importing ExecuTorch 7 s, against about 1 s for each of the default formats
DEFAULT = False
PRECISIONS = ("fp32", "int8")
# a torch.export program is what this converter captures from any module
NATIVE = {"torch": PRECISIONS}
NOT_NATIVE = {
    "keras": "no Keras-to-PyTorch converter fits this stack",
    "onnx": "nothing in this stack converts ONNX to ExecuTorch",
}
LAYOUT = "NCHW"
# activation observers: PT2E's HistogramObserver (the XNNPACK quantizer's default) or MinMaxObserver
CALIBRATIONS = ("histogram", "minmax")
WEIGHT_RANGE = (-127, 127)
INT8 = {"activations": "int8, 8-bit range [-128, 127]",
        "weights": f"int8, symmetric range [{WEIGHT_RANGE[0]}, {WEIGHT_RANGE[1]}]",
        "same_on": "every CPU XNNPACK runs on",
        "why": "XNNPACK's int8 kernels accumulate in int32, with no saturating int16 step"}
CALIBRATION_BATCH = 100


def _quantizer(ranges: str, scales: str, floats: dict):
    """ExecuTorch's XNNPACK quantizer for the whole model, but for the float layers."""
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e import MinMaxObserver
    config = get_symmetric_quantization_config(is_per_channel=scales == "per-channel")
    if ranges == "minmax":
        act = dataclasses.replace(config.input_activation,
                                  observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    floated = {name for chain in floats.values() for name in chain}  # a layer and what is folded into it

    def quantized(node) -> bool:  # (the quantizer's set_module_name refuses None: "not supported yet")
        return not any(path in floated for path, _ in (node.meta.get("nn_module_stack") or {}).values())

    class Quantizer(XNNPACKQuantizer):
        def annotate(self, model):
            _observe_after_clamp(model, config, quantized)
            return super().annotate(model)
    return Quantizer().set_global(config).set_filter_function(quantized)


def _observe_after_clamp(model, config, keep) -> None:
    """A conv2d or linear whose only reader is a clamp (relu6: aten.hardtanh or relu6) annotated
    as one op whose int8 output is observed after the clamp, as XNNPACK runs it (the clamp
    fused into the op) and as TFLite's converter and ONNX Runtime's quantizer observe it.
    XNNPACK's quantizer fuses only relu this way: a relu6 network's outputs are otherwise
    observed before the clamp, so half of each int8 range covers negative values that the
    clamp sets to 0, and every activation has twice the step it needs (on the zoo's
    mobilenet, top-1 agreement with fp32 99.1 % against 99.5-99.6 %). Written here: neither
    ExecuTorch nor torchao has an annotator for this pattern."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        Q_ANNOTATION_KEY, _mark_nodes_as_annotated, get_bias_qspec, get_input_act_qspec,
        get_output_act_qspec, get_weight_qspec)
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    aten = torch.ops.aten
    # nn.ReLU6 is captured as hardtanh, F.relu6 as relu6
    CLAMPS = (aten.hardtanh.default, aten.hardtanh_.default, aten.relu6.default, aten.relu6_.default)
    for clamp in model.graph.nodes:
        if clamp.op != "call_function" or clamp.target not in CLAMPS:
            continue
        op = clamp.args[0]
        if (getattr(op, "target", None) not in (aten.conv2d.default, aten.linear.default)
                or len(op.users) != 1 or Q_ANNOTATION_KEY in op.meta):
            continue
        bias = op.args[2] if len(op.args) > 2 and isinstance(op.args[2], torch.fx.Node) else None
        part = [clamp, op, op.args[1]] + ([bias] if bias is not None else [])
        if not all(keep(n) for n in part):
            continue
        inputs = {op.args[0]: get_input_act_qspec(config), op.args[1]: get_weight_qspec(config)}
        if bias is not None:
            inputs[bias] = get_bias_qspec(config)
        op.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
        clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config),
                                                              _annotated=True)
        _mark_nodes_as_annotated(part)


def _calibrated(model, calib_nchw, quantizer):
    """PT2E: the model captured with a free batch dimension, observed on every calibration
    image in batches, and converted to quantize/dequantize pairs around int8 weights. A
    model that cannot take a free batch (an imported program fixed at one) is observed
    one image at a time."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    try:
        batch = torch.export.Dim("batch", min=1, max=CALIBRATION_BATCH)
        captured = torch.export.export(model, (calib_nchw[:2],), dynamic_shapes=({0: batch},))
        step = CALIBRATION_BATCH
    except Exception:
        captured, step = torch.export.export(model, (calib_nchw[:1],)), 1
    prepared = prepare_pt2e(captured.module(), quantizer)
    with torch.no_grad():
        for i in range(0, len(calib_nchw), step):
            prepared(calib_nchw[i:i + step])
    return convert_pt2e(prepared)


def _round(module, rounder, floats) -> None:
    """Each quantized layer's integers replaced by the rounder's for its own scales. A
    converted PT2E module keeps a layer's int8 weights as a constant that a dequantize
    reads, and that dequantize feeds the layer's convolution or linear op, whose module
    path is the layer's name in the twin."""
    import torch
    dq = torch.ops.quantized_decomposed
    todo, done = rounder.layers(floats), []
    low, high = WEIGHT_RANGE
    for node in module.graph.nodes:
        if node.target not in (dq.dequantize_per_channel.default, dq.dequantize_per_tensor.default):
            continue
        source = node.args[0]
        if source.op != "get_attr" or getattr(module, source.target).dtype != torch.int8:
            continue  # an activation's dequantize
        stacks = [u.meta.get("nn_module_stack") or {} for u in node.users]
        names = {path for stack in stacks for path, _ in list(stack.values())[-1:]}
        if len(names) != 1 or next(iter(names)) not in todo:
            raise ValueError(f"the int8 weight {source.target} feeds the layers {sorted(names)}, not one of {todo}")
        layer = names.pop()
        scale = node.args[1]
        scale = getattr(module, scale.target).numpy() if hasattr(scale, "op") else scale
        q = torch.from_numpy(rounder.torch_integers(layer, scale, low, high))
        setattr(module, source.target, q.reshape(getattr(module, source.target).shape))
        done.append(layer)
    if sorted(done) != sorted(todo):
        raise ValueError(f"the quantized program's int8 layers are {sorted(done)}, not {sorted(todo)}")


def export(torch_model, precision: str, calib: np.ndarray, path: Path, options: dict) -> dict:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    calib_nchw = torch.from_numpy(nchw(calib))
    model = copy.deepcopy(torch_model).eval()
    notes: dict = {"delegate": "XNNPACK"}
    if precision == "int8":
        floats = options.get(FLOAT_LAYERS) or {}
        ranges = options.get(CALIBRATION) or CALIBRATIONS[0]
        scales = granularity(options)
        if scales not in GRANULARITIES:
            raise ValueError(f"unknown weight granularity {scales!r}")
        model = _calibrated(model, calib_nchw, _quantizer(ranges, scales, floats))
        if options.get(ROUNDER) is not None:
            _round(model, options[ROUNDER], floats)
        notes.update(quantization=f"PT2E static, XNNPACK quantizer, {scales} weights ({rounded_by(options)} "
                                  f"rounding), int8 activations, {ranges} observers",
                     per_channel_weights=scales == "per-channel", int8=dict(INT8, weights=f"{INT8['weights']}, {scales}"))
        if floats:
            notes[FLOAT_LAYERS] = list(floats)
    with torch.no_grad():
        program = torch.export.export(model, (calib_nchw[:1],))
    data = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    ops = program_ops(data)  # read back as the runner reads the file
    notes["delegated_calls"] = sum(n for k, n in ops.items() if k.endswith(DELEGATED))
    notes["portable_ops"] = {k: n for k, n in ops.items() if not k.endswith(DELEGATED)}
    path.write_bytes(data)
    return {"converter": "torch.export + executorch.exir.to_edge_transform_and_lower (XnnpackPartitioner)",
            "versions": {"torch": torch.__version__, "executorch": metadata.version("executorch")},
            "layout": LAYOUT, "notes": notes}
