"""ONNX (.onnx) from the PyTorch twin with torch.onnx (the dynamo exporter), one file,
dynamic batch. int8 is QDQ from ONNX Runtime's own tools: quant_pre_process, then
quantize_static with per-channel S8S8 MinMax calibration and 7-bit weights.

Why 7-bit weights (`reduce_range`): ONNX Runtime's x86 kernels without VNNI add pairs of
u8 x s8 products into a saturating int16, where 255 x 127 x 2 overflows and is clipped;
VNNI and ARM sum in int32. With weights in [-64, 64] a pair is at most 255 x 64 x 2 =
32,640, below 32,767, so every CPU computes the same integers. Measured on a Fashion-MNIST
seed CNN on an AVX2 host: 8-bit weights lost 0.66 points (98.22 % top-1 agreement with
fp32), 7-bit weights gained 0.04 (99.67 %); U8U8 lost 0.08 (README, "int8 on every CPU")."""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import numpy as np

from edgecnn.runtime.evaluate import nchw
from edgecnn.runtime.quiet import quiet

from . import CACHE, CALIBRATION, FLOAT_LAYERS, NATIVE_KINDS, ROUNDER, granularity, rounded_by

TWIN = "torch"
REQUIRES = (("torch",), ("onnx",), ("onnxscript",), ("onnxruntime",))
PRECISIONS = ("fp32", "int8")
NATIVE = dict.fromkeys(NATIVE_KINDS, PRECISIONS)  # export_native() takes every kind
LAYOUT = "NCHW"
CALIBRATIONS = ("minmax", "entropy", "percentile")  # quantize_static's MinMax, Entropy, Percentile (99.999)
# quantize_static's own Entropy histograms 128 bins for 128 levels, which leaves its
# threshold search one candidate, the full range (measured: the same file as MinMax), and
# it passes no bin count through. The histogram is therefore collected here, with this
# many bins, and handed to quantize_static as its calibration cache.
ENTROPY_BINS = 2048
OPSET = 18
INPUT, OUTPUT = "image", "logits"
# what makes the int8 file answer the same on every CPU, recorded in the manifest
INT8 = {"activations": "int8, 8-bit range",
        "same_on": "x86 with and without VNNI, ARM",
        "why": "x86 kernels without VNNI add u8 x s8 pairs into a saturating int16; 7-bit weights cannot "
               "overflow it"}
# options["weight_bits"] = 8 makes the file whose answers depend on the CPU: not offered
# by the CLI, kept so that the tests can show what the 7-bit default prevents
WEIGHT_BITS = (7, 8)


def _export_fp32(torch_model, example, path: Path) -> None:
    import torch
    model = copy.deepcopy(torch_model).eval()
    batch = torch.export.Dim("batch", min=1)
    with quiet():
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                          dynamo=True, external_data=False, opset_version=OPSET,
                          dynamic_shapes=({0: batch},), verbose=False)


def export(torch_model, precision: str, calib: np.ndarray, path: Path, options: dict) -> dict:
    import torch
    return _made(lambda fp32: _export_fp32(torch_model, torch.from_numpy(nchw(calib[:2])), fp32),
                 "torch.onnx.export(dynamo=True)", {"torch": torch.__version__}, precision, calib, path, options,
                 LAYOUT)


def export_native(kind: str, model, precision: str, calib: np.ndarray, path: Path, options: dict) -> dict:
    """From a model kept in its own framework: a torch.export program as any module, a
    Keras model through tf2onnx (its tf.function path: tf2onnx's from_keras fails on
    Keras 3), an ONNX file as it is. int8 is the same quantize_static as for the twin."""
    if kind == "torch":
        return export(model, precision, calib, path, options)
    if kind == "keras":
        import tensorflow as tf
        import tf2onnx

        def fp32_file(out):
            signature = [tf.TensorSpec((None, *calib.shape[1:]), tf.float32, name=INPUT)]
            with quiet():
                tf2onnx.convert.from_function(tf.function(lambda x: model(x, training=False)),
                                              input_signature=signature, opset=OPSET, output_path=str(out))
        return _made(fp32_file, "tf2onnx.convert.from_function", {"tensorflow": tf.__version__,
                                                                  "tf2onnx": tf2onnx.__version__},
                     precision, calib, path, options, "NHWC")  # tf2onnx keeps Keras's layout
    return _made(lambda out: out.write_bytes(Path(model).read_bytes()), "the ONNX file as imported", {},
                 precision, calib, path, options)


def _made(fp32_file, converter: str, versions: dict, precision: str, calib: np.ndarray, path: Path,
          options: dict, layout: str | None = None) -> dict:
    """An fp32 file from `fp32_file(out)`, or its int8: QDQ from ONNX Runtime's
    quant_pre_process and quantize_static, calibrated on `calib` in the file's own input
    name and layout, with --float-layers' nodes excluded. `layout`: the file's, when the
    exporter decides it; else ONNX Runtime's runner reads it from the input's shape."""
    import onnx
    from edgecnn.runtime.onnxrt import OnnxRuntimeRunner
    versions = dict(versions, onnx=onnx.__version__)
    if precision == "fp32":
        fp32_file(path)
        model = onnx.load(str(path))
        return {"converter": converter, "versions": versions, "layout": layout or _layout_of(path),
                "notes": {"opset": _opset(model)}}

    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    bits = options.get("weight_bits", 7)
    if bits not in WEIGHT_BITS:
        raise ValueError(f"weight_bits must be one of {WEIGHT_BITS}, not {bits!r}")
    cache = options.get(CACHE)
    work = None if cache is None else cache.get("onnx")
    if work is None:  # the fp32 file, pre-processed, and its activation ranges once calibrated
        work = tempfile.TemporaryDirectory(prefix=".edgecnn-onnx-", dir=path.parent)
        if cache is not None:
            cache["onnx"] = work
    try:
        tmp = Path(work.name)
        fp32, pre, ranges_file = tmp / "fp32.onnx", tmp / "pre.onnx", tmp / "ranges.json"
        if not pre.is_file():  # written whole or not at all: a cached one is complete
            fp32_file(fp32)
            quant_pre_process(str(fp32), str(tmp / "pre.part.onnx"), skip_symbolic_shape=True)
            os.replace(tmp / "pre.part.onnx", pre)
        runner = OnnxRuntimeRunner(fp32).load()  # the file's input name and layout

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.batches = iter(calib[i:i + 1] for i in range(len(calib)))

            def get_next(self):
                b = next(self.batches, None)
                return None if b is None else {runner.input_spec.name: runner.prepare(b)}

        exported, preprocessed = onnx.load(str(fp32)), onnx.load(str(pre))
        layout, opset = layout or runner.input_spec.layout, _opset(exported)
        ranges = options.get(CALIBRATION) or CALIBRATIONS[0]
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[ranges]
        floats = options.get(FLOAT_LAYERS) or {}
        scales = granularity(options)
        if ranges == "entropy" and not ranges_file.is_file():
            _entropy_ranges(pre, Reader(), tmp, ranges_file)
        # quantize_static calibrates into ranges_file, or reads it when it is there
        quantize_static(str(pre), str(path), Reader(), quant_format=QuantFormat.QDQ,
                        calibration_cache_path=ranges_file, per_channel=scales == "per-channel",
                        reduce_range=bits == 7, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=method,
                        nodes_to_exclude=_nodes_of(exported, preprocessed, floats))
        rounder = options.get(ROUNDER)
        if rounder is not None:
            layers = rounder.layers(floats)
            nodes = _nodes_of(exported, preprocessed, {n: rounder.graph.folded_chain(n) for n in layers})
            _round(path, dict(zip(layers, nodes)), rounder, bits)
    finally:
        if cache is None:
            work.cleanup()
    versions["onnxruntime"] = onnxruntime.__version__
    notes = {"opset": opset, "quantization": f"QDQ, {scales} S8S8, {bits}-bit weights ({rounded_by(options)} rounding)"
                                             f"{' (reduce_range)' if bits == 7 else ''}, {method.name}",
             "int8": (dict(INT8, weights=f"int8 {scales}, 7-bit range [-64, 64]") if bits == 7 else
                      {"weights": f"int8 {scales}, 8-bit range", "same_on": "CPUs that sum int8 in int32 (VNNI, ARM)"})}
    if floats:
        notes[FLOAT_LAYERS] = list(floats)
    return {"converter": f"{converter} + onnxruntime.quantization.quantize_static",
            "versions": versions, "layout": layout, "notes": notes}


def _round(path: Path, nodes: dict, rounder, bits: int) -> None:
    """The int8 weights of each layer's node ({layer: node name}) in the file at `path`
    replaced by the rounder's for the scales quantize_static chose."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType
    qmin, qmax = (int(v) for v in get_qmin_qmax_for_qType(onnx.TensorProto.INT8, reduce_range=bits == 7,
                                                          symmetric=True))
    model = onnx.load(str(path))
    initializers = {i.name: i for i in model.graph.initializer}
    made_by = {out: node for node in model.graph.node for out in node.output}
    named = {node.name: node for node in model.graph.node}
    for layer, name in nodes.items():
        node = named[name]
        dequantize = made_by[node.input[1]]  # QDQ: the weight reaches its node dequantized
        weights, scale = (initializers[dequantize.input[i]] for i in (0, 1))
        old = numpy_helper.to_array(weights)
        q = rounder.torch_integers(layer, numpy_helper.to_array(scale), qmin, qmax)
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        if node.op_type == "MatMul" or (node.op_type == "Gemm" and not trans_b):
            q = q.T  # (in, out), where PyTorch keeps (out, in)
        if q.shape != old.shape:
            raise ValueError(f"layer {layer!r}: the ONNX weights are {old.shape}, the graph's {q.shape}")
        weights.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(q).astype(old.dtype), weights.name))
    onnx.save(model, str(path))


def _entropy_ranges(model: Path, reader, tmp: Path, cache: Path) -> None:
    """Entropy (KL) activation ranges from an ENTROPY_BINS histogram, written into
    `cache` as a quantize_static calibration cache."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    calibrator = create_calibrator(model, sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
                                   augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": 128})
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)


def _layout_of(path: Path) -> str:
    from edgecnn.runtime.onnxrt import OnnxRuntimeRunner
    return OnnxRuntimeRunner(path).load().input_spec.layout


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)


WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


def _nodes_of(exported, preprocessed, floats: dict) -> list[str]:
    """The ONNX node of each float layer. The exporter records the module each node came
    from (its name scope); a conv whose batchnorm it folded carries the batchnorm's
    scope, so a layer is found by any name in its folded chain. quant_pre_process keeps
    node names but drops that record, so the scope is read from the exported file."""
    import ast
    scope = {}
    kept = {node.name for node in preprocessed.graph.node}
    for node in exported.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if node.op_type in WEIGHTED_OPS and "pkg.torch.onnx.name_scopes" in meta:
            path = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
            if len(path) > 1 and node.name in kept:
                scope.setdefault(path[1], []).append(node.name)
    out = []
    for layer, chain in floats.items():
        found = [n for name in chain for n in scope.get(name, [])]
        if len(found) != 1:
            raise ValueError(f"layer {layer!r} is {len(found)} weighted nodes in the ONNX graph, not one")
        out += found
    return out
