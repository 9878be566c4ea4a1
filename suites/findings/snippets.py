"""Per-framework source of a reproducer's ``run(x, y)``: the API called as its adapter calls it.

Each snippet takes the input as float64 (and int64 class ids), converts it exactly to the call's
dtype in the framework, calls the op (or differentiates the sum of its outputs with respect to
the logits for ``grad``), and returns the result as float64 NumPy. The expressions below mirror
``adapters/<backend>_adapter.py``; the NumPy formulas are copied from the adapter's own source.
A backend without a snippet (a plugin) is called through its ``xentbench.adapters`` entry point.
"""

from __future__ import annotations

import inspect
import textwrap

from xentbench.adapters.base import backend_and_api

_TORCH = {
    "torch.softmax": "torch.softmax(x, dim=-1)",
    "torch.log_softmax": "torch.log_softmax(x, dim=-1)",
    "torch.logsumexp": "torch.logsumexp(x, dim=-1)",
    "F.cross_entropy(probabilities)": 'F.cross_entropy(x, y, reduction="none")',
    "F.cross_entropy": 'F.cross_entropy(x, y, reduction="none")',
    "F.binary_cross_entropy_with_logits": (
        'F.binary_cross_entropy_with_logits(x, y, reduction="none")'
    ),
}
_KERAS_CCE, _KERAS_SCCE = (
    "keras.losses.categorical_crossentropy",
    ("keras.losses.sparse_categorical_crossentropy"),
)
_TENSORFLOW = {
    "tf.nn.softmax": "tf.nn.softmax(x)",
    "tf.nn.log_softmax": "tf.nn.log_softmax(x)",
    "tf.math.reduce_logsumexp": "tf.math.reduce_logsumexp(x, axis=-1)",
    "tf.nn.softmax_cross_entropy_with_logits": (
        "tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=x)"
    ),
    "tf.nn.sparse_softmax_cross_entropy_with_logits": (
        "tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)"
    ),
    "tf.nn.sigmoid_cross_entropy_with_logits": (
        "tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=x)"
    ),
    f"{_KERAS_CCE}(from_logits=True)": f"{_KERAS_CCE}(y, x, from_logits=True)",
    f"{_KERAS_CCE}(from_logits=False)": f"{_KERAS_CCE}(y, tf.nn.softmax(x), from_logits=False)",
    f"{_KERAS_SCCE}(from_logits=True)": f"{_KERAS_SCCE}(y, x, from_logits=True)",
    f"{_KERAS_SCCE}(from_logits=False)": f"{_KERAS_SCCE}(y, tf.nn.softmax(x), from_logits=False)",
    "keras.losses.binary_crossentropy(from_logits=True)": (
        "keras.losses.binary_crossentropy(y[..., None], x[..., None], from_logits=True)"
    ),
    "keras.losses.binary_crossentropy(from_logits=False)": (
        "keras.losses.binary_crossentropy(y[..., None], tf.math.sigmoid(x[..., None]), "
        "from_logits=False)"
    ),
}
_JAX = {
    "jax.nn.softmax": "jax.nn.softmax(x)",
    "jax.nn.log_softmax": "jax.nn.log_softmax(x)",
    "jax.nn.logsumexp": "jax.nn.logsumexp(x, axis=-1)",
    "jax.scipy.special.logsumexp": "jax.scipy.special.logsumexp(x, axis=-1)",
    "optax.softmax_cross_entropy": "optax.softmax_cross_entropy(x, y)",
    "optax.softmax_cross_entropy_with_integer_labels": (
        "optax.softmax_cross_entropy_with_integer_labels(x, y)"
    ),
    "optax.sigmoid_binary_cross_entropy": "optax.sigmoid_binary_cross_entropy(x, y)",
}
_NUMPY = {
    "stable.softmax": "_stable_softmax(x)",
    "stable.log_softmax": "_stable_log_softmax(x)",
    "stable.logsumexp": "_stable_logsumexp(x)",
    "stable.softmax_cross_entropy": "_stable_softmax_cross_entropy(x, y)",
    "stable.sparse_softmax_cross_entropy": "_stable_sparse_softmax_cross_entropy(x, y)",
    "stable.sigmoid_cross_entropy": "_stable_sigmoid_cross_entropy(x, y)",
    "naive.softmax": "_naive_softmax(x)",
    "naive.log_softmax": "np.log(_naive_softmax(x))",
    "naive.logsumexp": "np.log(np.sum(np.exp(x), axis=-1))",
    "naive.softmax_cross_entropy": "_naive_softmax_cross_entropy(x, y)",
    "naive.sparse_softmax_cross_entropy": "_naive_sparse_softmax_cross_entropy(x, y)",
    "naive.sigmoid_cross_entropy": "_naive_sigmoid_cross_entropy(x, y)",
    "scipy.special.softmax": "scipy.special.softmax(x, axis=-1)",
    "scipy.special.log_softmax": "scipy.special.log_softmax(x, axis=-1)",
    "scipy.special.logsumexp": "scipy.special.logsumexp(x, axis=-1)",
}
_ONNX_NODES = {
    "Softmax": ('[helper.make_node("Softmax", ["logits"], ["output"], axis=-1)]', "[]"),
    "LogSoftmax": ('[helper.make_node("LogSoftmax", ["logits"], ["output"], axis=-1)]', "[]"),
    "ReduceLogSumExp": (
        '[helper.make_node("ReduceLogSumExp", ["logits", "axes"], ["output"], keepdims=0)]',
        '[helper.make_tensor("axes", TensorProto.INT64, [1], [-1])]',
    ),
    "SoftmaxCrossEntropyLoss": (
        '[helper.make_node("SoftmaxCrossEntropyLoss", ["logits", "labels"], ["output"], '
        'reduction="none")]',
        "[]",
    ),
    "LogSoftmax+NegativeLogLikelihoodLoss": (
        '[helper.make_node("LogSoftmax", ["logits"], ["log_probabilities"], axis=-1), '
        'helper.make_node("NegativeLogLikelihoodLoss", ["log_probabilities", "labels"], '
        '["output"], reduction="none")]',
        "[]",
    ),
}

_TORCH_SOURCE = """
import torch
import torch.nn.functional as F


def run(x, y):
    device, dtype = torch.device(DEVICE), getattr(torch, DTYPE)
    xt = torch.tensor(x, dtype=torch.float64, device=device).to(dtype)
    if y is not None:
        y = torch.tensor(y, device=device)
        y = y if y.dtype == torch.int64 else y.to(dtype)
    xt.requires_grad_(QUANTITY == "grad")

    def op(x, y):
        return {expr}

    if MODE == "compiled":
        op = torch.compile(op, fullgraph=True)
    out = op(xt, y)
    if QUANTITY == "grad":
        (out,) = torch.autograd.grad(out.sum(), xt)
    return out.detach().to(torch.float64).cpu().numpy()
"""
_TENSORFLOW_SOURCE = """
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
import tensorflow as tf


def run(x, y):
    dtype = getattr(tf, DTYPE)

    def op(x, y):
        return {expr}

    def gradient(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(op(x, y))
        return tape.gradient(total, x)

    function = gradient if QUANTITY == "grad" else op
    if MODE == "compiled":
        function = tf.function(function, jit_compile=True)
    with tf.device("/GPU:0" if DEVICE == "cuda" else "/CPU:0"):
        xt = tf.cast(tf.constant(x, tf.float64), dtype)
        if y is not None:
            y = tf.constant(y, tf.int64) if y.dtype.kind == "i" else tf.cast(tf.constant(y), dtype)
        return tf.cast(function(xt, y), tf.float64).numpy()
"""
_JAX_SOURCE = """
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import jax.scipy.special
import optax


def run(x, y):
    device = jax.devices("gpu" if DEVICE == "cuda" else "cpu")[0]
    dtype = getattr(jnp, DTYPE)
    xj = jax.device_put(np.asarray(x).astype(dtype), device)
    if y is not None:
        y = jax.device_put(y if y.dtype.kind == "i" else y.astype(dtype), device)

    def op(x, y):
        return {expr}

    function = jax.grad(lambda x, y: jnp.sum(op(x, y))) if QUANTITY == "grad" else op
    if MODE == "compiled":
        function = jax.jit(function)
    return np.asarray(function(xj, y)).astype(np.float64)
"""
_ONNX_SOURCE = """
import onnxruntime as ort
from onnx import TensorProto, helper


def run(x, y):
    element = {{"float16": TensorProto.FLOAT16, "float32": TensorProto.FLOAT,
               "float64": TensorProto.DOUBLE}}[DTYPE]
    nodes = {nodes}
    inputs = [helper.make_tensor_value_info("logits", element, ["batch", "classes"])]
    if y is not None:
        inputs.append(helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch"]))
    output = helper.make_tensor_value_info("output", element, {output_shape})
    graph = helper.make_graph(nodes, "repro", inputs, [output], initializer={initializers})
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {{"logits": x.astype(DTYPE)}}
    if y is not None:
        feeds["labels"] = y.astype(np.int64)
    return session.run(["output"], feeds)[0].astype(np.float64)
"""
_NUMPY_SOURCE = """
import scipy.special

{helpers}

def run(x, y):
    if DTYPE == "bfloat16":
        import ml_dtypes

        dtype = ml_dtypes.bfloat16
    else:
        dtype = np.dtype(DTYPE)
    x = x.astype(dtype)
    y = y if y is None or y.dtype.kind == "i" else y.astype(dtype)
    with np.errstate(all="ignore"):  # overflow and 0 * inf are what is being shown
        return np.asarray({expr}).astype(np.float64)
"""
_PLUGIN_SOURCE = """
try:
    from xentbench.adapters import registry
    from xentbench.adapters.base import Call  # the xentbench adapter protocol the plugin implements
except ImportError as missing:  # cannot tell present from fixed: neither 0 nor 1
    print(f"cannot run: {{missing}} (install xentbench and the plugin)", file=sys.stderr)
    sys.exit(2)


def run(x, y):
    try:  # a built-in backend or one registered in the xentbench.adapters entry-point group
        adapter = registry.load({backend!r})
    except Exception as missing:  # no such plugin, or its framework is not installed
        print(f"cannot run: backend {backend!r} unavailable ({{missing!r}})", file=sys.stderr)
        raise SystemExit(2) from None
    if DTYPE == "bfloat16":
        import ml_dtypes

        dtype = ml_dtypes.bfloat16
    else:
        dtype = np.dtype(DTYPE)
    options = {{  # arrays in the call's dtype, as xentbench passes them
        k: v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
        for k, v in OPTIONS.items()
    }}
    implementation = adapter.implementation(IMPLEMENTATION)
    extra = {{"options": options}} if options else {{}}
    call = Call(implementation, DTYPE, DEVICE, MODE, QUANTITY, **extra)
    y = y if y is None or y.dtype.kind == "i" else y.astype(dtype)
    return np.asarray(adapter.prepare(call, x.astype(dtype), y)(), dtype=np.float64)
"""


def _numpy_helpers() -> str:
    """The adapter's own formula helpers, copied verbatim (they are what the adapter calls)."""
    from xentbench.adapters import numpy_adapter

    names = sorted(n for n in vars(numpy_adapter) if n.startswith(("_stable_", "_naive_")))
    functions = [numpy_adapter._shift_by_max, numpy_adapter._checked_labels]
    functions += [getattr(numpy_adapter, n) for n in names]
    return "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in functions)


def run_source(implementation: str, reducing: bool) -> tuple[str, str]:
    """(framework named in the docstring, source defining ``run(x, y)``) for an implementation."""
    backend, api = backend_and_api(implementation)
    if backend == "torch" and api in _TORCH:
        return "PyTorch", _TORCH_SOURCE.format(expr=_TORCH[api])
    if backend == "tensorflow" and api in _TENSORFLOW:
        return "TensorFlow/Keras", _TENSORFLOW_SOURCE.format(expr=_TENSORFLOW[api])
    if backend == "jax" and api in _JAX:
        return "JAX/optax", _JAX_SOURCE.format(expr=_JAX[api])
    if backend == "onnxruntime" and api in _ONNX_NODES:
        nodes, initializers = _ONNX_NODES[api]
        shape = '["batch"]' if reducing else '["batch", "classes"]'
        source = _ONNX_SOURCE.format(nodes=nodes, initializers=initializers, output_shape=shape)
        return "onnx and onnxruntime", source
    if backend == "numpy" and api.startswith("scipy.") and api in _NUMPY:
        return "SciPy", _NUMPY_SOURCE.format(helpers="", expr=_NUMPY[api])
    if backend == "numpy" and api in _NUMPY:  # xentbench's own formulas, copied in
        return "NumPy", _NUMPY_SOURCE.format(helpers=_numpy_helpers(), expr=_NUMPY[api])
    if backend == "verify":  # the user's function: the script configures the backend as verify did
        return "xentbench and the verified function", _verify_source()
    return f"the {backend} plugin", _PLUGIN_SOURCE.format(backend=backend)


def _verify_source() -> str:
    """The plugin source for ``xentbench verify``'s backend, its target (this process's
    ``XENTBENCH_VERIFY``, set by verify) written into the script."""
    import os

    from xentbench.adapters.function_adapter import ENV_VAR

    setup = f"\nimport os\n\nos.environ.setdefault({ENV_VAR!r}, {os.environ.get(ENV_VAR, '')!r})\n"
    return setup + _PLUGIN_SOURCE.format(backend="verify")
