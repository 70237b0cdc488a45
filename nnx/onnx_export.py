"""Export to ONNX: a Sequential as a graph of standard ONNX operators, for onnxruntime (C++, C#,
Java, JS, mobile) and other runtimes where nnx is not installed. Needs the onnx extra:
``pip install 'nnx[onnx]'``.

The graph is built with the onnx package's own helpers and checked by its checker, so the file
follows the format as onnx itself defines it. Every layer maps to operators of the default domain:

    Dense      Gemm (x·W + b)          ReLU, Tanh, Sigmoid   Relu, Tanh, Sigmoid
    LeakyReLU  LeakyRelu (alpha)       Softmax               Softmax (axis 1)
    GELU       Gelu from opset 20; before it, x/2·(1 + Erf(x/√2)) or the tanh form, from primitives
    LayerNorm  LayerNormalization (axis −1, epsilon, gamma, beta)
    Dropout    nothing: the graph is for inference
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

import nnx
from nnx.activations import GELU, LeakyReLU, Sigmoid, Tanh
from nnx.errors import ConfigError, ExportError
from nnx.files import atomic_write
from nnx.layers import Dense, Dropout, Layer, ReLU, Softmax
from nnx.model import Sequential
from nnx.normalization import LayerNorm

if TYPE_CHECKING:
    import onnx

MIN_OPSET = 17  # the first with LayerNormalization
GELU_OPSET = 20  # the first with Gelu


def _onnx() -> Any:
    """The onnx package; ExportError with the install command when it is missing."""
    try:
        import onnx
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
    except ImportError as exc:
        raise ExportError(
            "exporting to ONNX needs the onnx package: pip install 'nnx[onnx]' "
            f"(in nnx's folder: pip install '.[onnx]'); {exc}"
        ) from None
    return onnx


def check_opset(opset: Any) -> int:
    """opset as an int in [MIN_OPSET, the newest the installed onnx knows]; ConfigError otherwise."""
    newest = _onnx().defs.onnx_opset_version()
    if not isinstance(opset, (int, np.integer)) or isinstance(opset, bool) or not MIN_OPSET <= opset <= newest:
        raise ConfigError(
            f"opset must be an integer in [{MIN_OPSET}, {newest}] (the installed onnx's newest); got {opset!r}"
        )
    return int(opset)


class _Graph:
    """Nodes and float32 initializers in the making; tensors are named after the layer they come from."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx, self.opset = onnx, opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: Any) -> str:
        """An initializer of ``value`` as float32 (a float64 model's weights too); returns its name."""
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attributes: Any) -> str:
        """A node of one output, named ``name``; returns that output's name."""
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [name], name=name, **attributes))
        return name


def _dense(g: _Graph, at: str, layer: Dense, x: str, weights: dict[str, np.ndarray]) -> str:
    return g.op("Gemm", [x, g.const(f"{at}.W", weights[f"{at}.W"]), g.const(f"{at}.b", weights[f"{at}.b"])], at)


def _layer_norm(g: _Graph, at: str, layer: LayerNorm, x: str, weights: dict[str, np.ndarray]) -> str:
    gamma, beta = g.const(f"{at}.gamma", weights[f"{at}.gamma"]), g.const(f"{at}.beta", weights[f"{at}.beta"])
    return g.op("LayerNormalization", [x, gamma, beta], at, axis=-1, epsilon=layer.eps)


def _gelu(g: _Graph, at: str, layer: GELU, x: str, weights: dict[str, np.ndarray]) -> str:
    if g.opset >= GELU_OPSET:
        return g.op("Gelu", [x], at, approximate=layer.approximate)
    half, one = g.const(f"{at}.half", 0.5), g.const(f"{at}.one", 1.0)
    if layer.approximate == "none":  # Φ(x) = (1 + erf(x/√2))/2
        scaled = g.op("Div", [x, g.const(f"{at}.sqrt2", math.sqrt(2.0))], f"{at}.scaled")
        inner = g.op("Erf", [scaled], f"{at}.erf")
    else:  # Φ(x) ≈ (1 + tanh(√(2/π)·(x + 0.044715·x³)))/2
        cube = g.op("Mul", [x, g.op("Mul", [x, x], f"{at}.square")], f"{at}.cube")
        cubic = g.op("Add", [x, g.op("Mul", [cube, g.const(f"{at}.c", 0.044715)], f"{at}.cube_c")], f"{at}.cubic")
        arg = g.op("Mul", [cubic, g.const(f"{at}.k", math.sqrt(2.0 / math.pi))], f"{at}.arg")
        inner = g.op("Tanh", [arg], f"{at}.tanh")
    cdf = g.op("Mul", [g.op("Add", [inner, one], f"{at}.one_plus"), half], f"{at}.cdf")
    return g.op("Mul", [x, cdf], at)


def _simple(op_type: str, **attributes: Any) -> Callable[..., str]:
    """A converter to one node without weights."""
    return lambda g, at, layer, x, weights: g.op(op_type, [x], at, **attributes)


# exact types: a subclass may compute something else, so it is not exported as its base
CONVERTERS: dict[type[Layer], Callable[..., str]] = {
    Dense: _dense,
    ReLU: _simple("Relu"),
    Tanh: _simple("Tanh"),
    Sigmoid: _simple("Sigmoid"),
    Softmax: _simple("Softmax", axis=1),
    GELU: _gelu,
    LeakyReLU: lambda g, at, layer, x, weights: g.op("LeakyRelu", [x], at, alpha=layer.negative_slope),
    LayerNorm: _layer_norm,
    Dropout: lambda g, at, layer, x, weights: x,
}
"""Each exportable layer type -> f(graph, "layers.<i>", layer, input name, weights) -> output name."""


def to_onnx(model: Sequential, opset: int = MIN_OPSET) -> onnx.ModelProto:
    """``model`` as a checked ONNX model (see ``export_onnx``)."""
    onnx = _onnx()
    opset = check_opset(opset)
    if not isinstance(model, Sequential):
        raise ExportError(f"model must be an nnx Sequential; got {type(model).__name__}")
    for i, layer in enumerate(model.layers):
        if type(layer) not in CONVERTERS:
            exportable = ", ".join(cls.__name__ for cls in CONVERTERS)
            raise ExportError(
                f"layers[{i}] ({type(layer).__name__}) cannot be exported to ONNX: "
                f"no ONNX operator computes it; exportable layers: {exportable}"
            )
    layers = model.layers
    if model.task != "regression" and isinstance(layers[-1], Softmax):
        layers = layers[:-1]  # the logits, as model.forward(x, logits=True); the head applies the softmax
    g, weights, x = _Graph(onnx, opset), model.get_weights(), "x"
    for i, layer in enumerate(layers):
        x = CONVERTERS[type(layer)](g, f"layers.{i}", layer, x, weights)
    head = {"classification": "Softmax", "binary": "Sigmoid"}.get(model.task)
    g.nodes[-1].output[0] = x = "outputs" if head is None else "logits"  # a Dense always gives a last node
    if head is not None:
        g.op(head, [x], "probabilities", **({"axis": 1} if head == "Softmax" else {}))

    def tensor(name: str, features: int) -> onnx.ValueInfoProto:
        return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", features])

    graph = onnx.helper.make_graph(
        g.nodes,
        "nnx.Sequential",
        [tensor("x", model.in_features)],
        [tensor(name, model.out_features) for name in (("outputs",) if head is None else ("logits", "probabilities"))],
        initializer=g.initializers,
    )
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=onnx.helper.find_min_ir_version_for(opsets),  # the oldest that holds it: older runtimes load it
        producer_name="nnx",
        producer_version=nnx.__version__,
    )
    props = {"task": model.task}
    if model.class_names is not None:
        props["class_names"] = json.dumps(model.class_names)
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: Sequential, path: str | os.PathLike[str], opset: int = MIN_OPSET) -> None:
    """Write ``model`` to ``path`` as an ONNX model (``nnx.export_onnx``), checked, atomically.

    The graph takes one input ``x``: (batch, in_features) float32, the batch dimension dynamic.
    Its outputs follow ``model.task``: "classification" gives ``logits`` (the outputs before a
    final Softmax, as ``model.forward(x, logits=True)``) and ``probabilities`` (their softmax
    over axis 1, as ``model.predict``), both (batch, out_features) float32; "binary" gives
    ``logits`` and ``probabilities`` (their sigmoid); "regression" one output ``outputs``.
    The file's metadata_props hold "task" and, when the model has them, "class_names" (JSON).

    A float64 model is exported with float32 weights, since the input is float32: its results
    then agree with ``model.predict`` to float32 precision, not float64.

    opset: the ONNX operator set, from 17 (the first with LayerNormalization) to the newest that
    the installed onnx knows; from 20 GELU is one Gelu node, before it a few primitive ones.
    Raises ExportError for a layer no ONNX operator computes (a custom Layer subclass; the error
    names its index and type) or when the onnx extra is missing, ConfigError for a bad opset.
    """
    atomic_write(path, to_onnx(model, opset).SerializeToString())


__all__ = ["CONVERTERS", "MIN_OPSET", "check_opset", "export_onnx", "to_onnx"]
