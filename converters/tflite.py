"""TFLite (.tflite) from the Keras twin, with TensorFlow's own TFLite converter:
fp32, fp16 (float16 weights, dequantized to float32 when the interpreter loads them:
half the file, float32 compute on a CPU, the usual input of GPU delegates),
dynamic-range (int8 weights, float activations), and full integer int8 with int8 input
and output, calibrated on a representative dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.runtime.quiet import quiet

from . import CACHE, FLOAT_LAYERS, ROUNDER, granularity, rounded_by

TWIN = "keras"
REQUIRES = (("tensorflow", "tensorflow-cpu"),)
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
LAYOUT = "NHWC"
CALIBRATIONS = ("minmax",)  # TFLite's calibrator records each tensor's min and max; it offers no other
# export() takes any Keras model: one kept in its own framework too (toolchain/native.py)
NATIVE = {"keras": PRECISIONS}
NOT_NATIVE = {
    "torch": "no PyTorch-to-TFLite converter fits this stack (litert-torch pulls jax and transformers, "
             "about 1 GB)",
    "onnx": "no ONNX-to-TFLite converter fits this stack (onnx2tf pins tensorflow 2.19 and numpy 1.26)",
}


def export(keras_model, precision: str, calib: np.ndarray, path: Path, options: dict) -> dict:
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    notes = {}
    if precision in ("fp16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        notes["quantization"] = "float16 weights, float32 compute (dequantized when loaded)"
    if precision == "int8":
        def representative():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        scales = granularity(options)
        # the converter's only switch for one scale per layer is this private attribute
        # (TF 2.x: the quantization debugger reads it too)
        converter._experimental_disable_per_channel = scales == "per-tensor"
        notes["quantization"] = (f"full integer, {scales} weights ({rounded_by(options)} rounding), "
                                 f"int8 input and output")
    elif precision == "dynamic":
        notes["quantization"] = "dynamic range: int8 weights, float activations"
    with quiet():  # the converter prints a SavedModel dump on stdout
        floats = options.get(FLOAT_LAYERS) if precision == "int8" else None
        if floats:
            blob = _with_float_layers(keras_model, converter, representative, floats, options.get(CACHE))
            notes[FLOAT_LAYERS] = list(floats)
        else:
            blob = converter.convert()
        if precision == "int8" and options.get(ROUNDER) is not None:
            blob = _round(blob, options[ROUNDER], floats or {})
    path.write_bytes(blob)
    return {"converter": "tf.lite.TFLiteConverter.from_keras_model",
            "versions": {"tensorflow": tf.__version__}, "layout": LAYOUT, "notes": notes}


WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _layers_of(keras_model, tensor_name: str, outputs) -> set[str]:
    """The Keras layers an op's output tensor is named after: "m_1/stem_1/convolution;
    m_1/stem_bn_1/..." -> {"stem", "stem_bn"}, where the model is "m" and tracing added
    the "_1" to every scope (read from the model's own scope, not assumed). A tensor in
    `outputs` (the model's, named after its signature) is the last layer's."""
    if tensor_name in outputs:
        return {keras_model.outputs[0]._keras_history.operation.name}
    found = set()
    for name in tensor_name.split(";"):
        parts = name.split("/")
        if len(parts) > 2 and parts[0].startswith(keras_model.name):
            suffix = parts[0][len(keras_model.name):]
            if parts[1].endswith(suffix):
                found.add(parts[1][:len(parts[1]) - len(suffix)] if suffix else parts[1])
    return found


def _round(blob: bytes, rounder, floats) -> bytes:
    """The int8 weights of every layer the file quantizes replaced by the rounder's for
    the converter's own scales. TFLite's int8 weights are symmetric, in [-127, 127]."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    sub = model.subgraphs[0]
    kinds = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    todo = rounder.layers(floats)
    done = []
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = kinds.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        if kind not in WEIGHTED_OPS:
            continue
        weights = sub.tensors[op.inputs[1]]
        if weights.type != schema.TensorType.INT8:
            continue  # a float layer's op
        # the file's integers in canonical layout: (out, kh, kw, in) -> (kh, kw, in, out);
        # depthwise (1, kh, kw, C) -> (kh, kw, 1, C); dense (out, in) -> (in, out)
        old = model.buffers[weights.buffer].data.view(np.int8).reshape(weights.shape)
        old = (old.T if old.ndim == 2 else old.transpose(1, 2, 0, 3) if kind == "DEPTHWISE_CONV_2D"
               else old.transpose(1, 2, 3, 0))
        scale = weights.quantization.scale
        # the layer is found by its weights: Keras's and tracing's scope names are not
        # reliable for a model imported with generated layer names
        layer = rounder.layer_of(old, scale, [n for n in todo if n not in done])
        q = rounder.integers(layer, scale, -127, 127)
        q = (q.T if q.ndim == 2 else q.transpose(2, 0, 1, 3) if kind == "DEPTHWISE_CONV_2D"
             else q.transpose(3, 0, 1, 2))
        model.buffers[weights.buffer].data = np.ascontiguousarray(q, np.int8).view(np.uint8).ravel()
        done.append(layer)
    if sorted(done) != sorted(todo):
        raise ValueError(f"the TFLite graph's int8 ops are the layers {sorted(done)}, not {sorted(todo)}")
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _with_float_layers(keras_model, converter, representative, floats: dict, cache: dict | None) -> bytes:
    """Full integer int8 with the named layers in float, through TFLite's quantization
    debugger: it calibrates once, then quantizes with those layers' ops denylisted
    (each float op gets a DEQUANTIZE before it and a QUANTIZE after it). The debugger is
    kept in `cache`, and the next set of float layers quantizes the same calibration."""
    import tensorflow as tf
    if cache is None or "debugger" not in cache:
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=representative)
        calibrated = tf.lite.Interpreter(model_content=debugger.calibrated_model)
        tensors = {t["index"]: t["name"] for t in calibrated.get_tensor_details()}
        ops = [(op["op_name"], tensors[op["outputs"][0]]) for op in calibrated._get_ops_details()]
        # an op that writes the model's output is named after the signature, not its layer
        outputs = {d["name"] for d in calibrated.get_output_details()}
        if cache is not None:
            cache["debugger"] = debugger, ops, outputs
    else:
        debugger, ops, outputs = cache["debugger"]
    deny = []
    for layer in floats:
        found = [out for kind, out in ops if kind in WEIGHTED_OPS and layer in _layers_of(keras_model, out, outputs)]
        if len(found) != 1:
            raise ValueError(f"layer {layer!r} is {len(found)} weighted ops in the TFLite graph, not one")
        deny += found
    # the same calibration, quantized again with the denylist (the options setter does not recalibrate)
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=deny, fully_quantize=True)
    return debugger.get_nondebug_quantized_model()
