"""ONNX Runtime: one-node ONNX graphs (Softmax, LogSoftmax, ReduceLogSumExp, ...) on the CPU.

ONNX Runtime runs models, not functions, so each implementation is a small graph built with
``onnx.helper`` (opset 18, symbolic ``[batch, classes]`` input) and run in an
``InferenceSession`` with default options, one session per (implementation, dtype). Inputs
are bound as OrtValues once, in ``prepare``, so ``run`` times the session, not conversion.
Value only (ONNX Runtime inference has no autodiff), eager only, CPUExecutionProvider only.
``SoftmaxCrossEntropyLoss`` takes the options ONNX defines: ``reduction`` (none, sum, mean:
ONNX's mean is the weighted mean of the reference), ``ignore_index`` (an attribute) and the
class weights (its optional third input); each combination gets its own graph.

Dtypes are what the CPU provider accepts (checked by experiment with onnxruntime 1.32):
float32 and float64 everywhere, float16 everywhere (onnxruntime inlines the op's ONNX
function and inserts casts to float32 around it), bfloat16 only for ReduceLogSumExp (same
cast insertion; the others fail at session creation, NOT_IMPLEMENTED or INVALID_GRAPH).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from xentbench.adapters._convert import bfloat16_from_bits
from xentbench.adapters._table import TableAdapter
from xentbench.adapters.base import Call, Implementation, PreparedCall
from xentbench.reference.evaluate import output_shape as reference_output_shape

OPSET = 18
_ELEMENT_TYPES: dict[str, int] = {
    "float16": TensorProto.FLOAT16,
    "bfloat16": TensorProto.BFLOAT16,
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
}
_STANDARD_DTYPES = ("float16", "float32", "float64")


@dataclass(frozen=True)
class _Graph:
    """How one implementation is expressed in ONNX: its nodes, output rank and supported dtypes."""

    op: str
    nodes: tuple[onnx.NodeProto, ...]
    summary: str
    dtypes: tuple[str, ...] = _STANDARD_DTYPES
    initializers: tuple[onnx.TensorProto, ...] = ()

    @property
    def adaptation(self) -> str:
        return f"graph built with onnx.helper, opset {OPSET}: {self.summary}"


def _node(op_type: str, inputs: list[str], **attributes: object) -> onnx.NodeProto:
    return helper.make_node(op_type, inputs, ["output"], **attributes)


_GRAPHS: dict[str, _Graph] = {
    "Softmax": _Graph("softmax", (_node("Softmax", ["logits"], axis=-1),), "Softmax(axis=-1)"),
    "LogSoftmax": _Graph(
        "log_softmax",
        (_node("LogSoftmax", ["logits"], axis=-1),),
        "LogSoftmax(axis=-1)",
    ),
    "ReduceLogSumExp": _Graph(
        "logsumexp",
        (_node("ReduceLogSumExp", ["logits", "axes"], keepdims=0),),
        "ReduceLogSumExp(axes=[-1] as an initializer, keepdims=0)",
        dtypes=(*_STANDARD_DTYPES, "bfloat16"),
        initializers=(helper.make_tensor("axes", TensorProto.INT64, [1], [-1]),),
    ),
    "SoftmaxCrossEntropyLoss": _Graph(
        "sparse_softmax_cross_entropy",
        (_node("SoftmaxCrossEntropyLoss", ["logits", "labels"], reduction="none"),),
        "SoftmaxCrossEntropyLoss(reduction='none'), int64 labels",
    ),
    "LogSoftmax+NegativeLogLikelihoodLoss": _Graph(
        "sparse_softmax_cross_entropy",
        (
            helper.make_node("LogSoftmax", ["logits"], ["log_probabilities"], axis=-1),
            _node("NegativeLogLikelihoodLoss", ["log_probabilities", "labels"], reduction="none"),
        ),
        "two nodes composed by the adapter, LogSoftmax(axis=-1) -> "
        "NegativeLogLikelihoodLoss(reduction='none'), int64 labels",
    ),
}


_LOSS_OPTIONS = ("reduction", "ignore_index", "class_weight")


def _loss_graph(options: dict) -> _Graph:
    """SoftmaxCrossEntropyLoss with the attributes and inputs ``options`` ask for."""
    attributes: dict[str, object] = {"reduction": options.get("reduction", "none")}
    if "ignore_index" in options:
        attributes["ignore_index"] = int(options["ignore_index"])
    inputs = ["logits", "labels"] + (["weights"] if "class_weight" in options else [])
    node = _node("SoftmaxCrossEntropyLoss", inputs, **attributes)
    return _Graph("sparse_softmax_cross_entropy", (node,), f"SoftmaxCrossEntropyLoss{attributes}")


def build_model(api: str, dtype: str, options: dict | None = None) -> onnx.ModelProto:
    """The ONNX model for implementation ``api`` with inputs and output of ``dtype``."""
    options = options or {}
    graph = _loss_graph(options) if options else _GRAPHS[api]
    element_type = _ELEMENT_TYPES[dtype]
    inputs = [helper.make_tensor_value_info("logits", element_type, ["batch", "classes"])]
    if graph.op == "sparse_softmax_cross_entropy":
        inputs.append(helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch"]))
    if "class_weight" in options:
        inputs.append(helper.make_tensor_value_info("weights", element_type, ["classes"]))
    output_shape = list(reference_output_shape(graph.op, "value", ("batch", "classes")))
    if options.get("reduction", "none") != "none":
        output_shape = []
    output = helper.make_tensor_value_info("output", element_type, output_shape)
    body = helper.make_graph(
        list(graph.nodes), api, inputs, [output], initializer=list(graph.initializers)
    )
    # The lowest IR version the opset needs, not the installed onnx's newest: an onnxruntime
    # released before that onnx refuses a newer IR version though it runs the opset.
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(
        body, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets)
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _ort_value(array: np.ndarray, element_type: int) -> ort.OrtValue:
    """An OrtValue on top of the array's buffer (it keeps the array alive; no copy)."""
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
        np.ascontiguousarray(array), element_type
    )


def _to_numpy(value: ort.OrtValue) -> np.ndarray:
    """The OrtValue as NumPy; bfloat16 is copied out as raw bits (OrtValue.numpy() refuses it)."""
    if value.data_type() != "tensor(bfloat16)":
        return value.numpy()
    shape = tuple(value.shape())
    raw = (ctypes.c_uint16 * int(np.prod(shape))).from_address(value.data_ptr())
    return bfloat16_from_bits(np.ctypeslib.as_array(raw).copy()).reshape(shape)


class OnnxruntimeAdapter(TableAdapter):
    """ONNX operators run by onnxruntime's CPU provider, value only."""

    name = "onnxruntime"

    def __init__(self) -> None:
        super().__init__()
        self._sessions: dict[tuple, ort.InferenceSession] = {}

    def version(self) -> str:
        return f"onnxruntime {ort.__version__}, onnx {onnx.__version__}"

    def entries(self) -> list[tuple[Implementation, _Graph]]:
        """The table's "function" of an ONNX implementation is its graph (sessions run it)."""
        return [
            (
                Implementation(
                    name=f"onnxruntime:{api}",
                    op=graph.op,
                    dtypes=graph.dtypes,
                    adaptation=graph.adaptation,
                    options=_LOSS_OPTIONS if api == "SoftmaxCrossEntropyLoss" else (),
                    option_values=(("reduction", ("none", "sum", "mean")),),
                ),
                graph,
            )
            for api, graph in _GRAPHS.items()
        ]

    def _session(self, api: str, dtype: str, options: dict) -> ort.InferenceSession:
        structure = tuple(
            (name, "array" if name == "class_weight" else value) for name, value in options.items()
        )
        key = (api, dtype, structure)
        if key not in self._sessions:
            model = build_model(api, dtype, options).SerializeToString()
            self._sessions[key] = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        return self._sessions[key]

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        """Bind the inputs as OrtValues; ``run`` executes the session (synchronous on the CPU)."""
        session = self._session(call.implementation.api, call.dtype, call.options)
        feeds = {"logits": _ort_value(logits, _ELEMENT_TYPES[call.dtype])}
        if labels is not None:
            feeds["labels"] = _ort_value(labels, TensorProto.INT64)
        if "class_weight" in call.options:
            weights = np.asarray(call.options["class_weight"])
            feeds["weights"] = _ort_value(weights, _ELEMENT_TYPES[call.dtype])

        def run() -> ort.OrtValue:
            return session.run_with_ort_values(["output"], feeds)[0]

        return PreparedCall(run=run, to_numpy=_to_numpy)
