"""``run(x, y)`` for reproducers of calls with options, a tangent or the linear op.

The script holds the call's options literally in ``OPTIONS`` (arrays as float64, converted
exactly to the call's dtype in the framework). The functions the adapter calls are copied
verbatim from ``adapters/torch_adapter.py``, ``adapters/jax_adapter.py`` and
``adapters/tensorflow_options.py`` / ``tensorflow_adapter.py`` (``inspect.getsource``), so the
script calls the API with the same arguments, the same direction (``cotangent``: a VJP;
``tangent``: a JVP) and the same mode as the adapter does.
"""

from __future__ import annotations

import inspect
import textwrap

from xentbench.adapters.base import backend_and_api

_TORCH_APIS = {
    "torch.softmax": "_softmax",
    "torch.log_softmax": "_log_softmax",
    "torch.logsumexp": "_logsumexp",
    "F.cross_entropy(probabilities)": "_cross_entropy",
    "F.cross_entropy": "_cross_entropy",
    "F.nll_loss(F.log_softmax)": "_nll_loss",
    "F.binary_cross_entropy_with_logits": "_binary_cross_entropy_with_logits",
    "F.linear+F.cross_entropy": "_linear_then_cross_entropy",
    "F.linear_cross_entropy": "_fused(None)",
    "F.linear_cross_entropy(chunked)": "_fused(_chunking())",
    "F.linear_cross_entropy(chunked,compact,16)": (
        '_fused(_chunking(batch_chunk_size=16, acc_policy="compact"))'
    ),
    # The LLM head's compositions (adapters/torch_head.py).
    "torch.softmax(softcapped)": "_head_unlabelled(torch.softmax)",
    "torch.log_softmax(softcapped)": "_head_unlabelled(torch.log_softmax)",
    "torch.logsumexp(softcapped)": "_head_unlabelled(torch.logsumexp)",
    "F.cross_entropy(softcapped)+z_loss": "_head_cross_entropy",
    "F.cross_entropy(softcapped,probabilities)+z_loss": "_head_cross_entropy",
    "vocab_parallel_cross_entropy(simulated shards)": "vocab_parallel",
    "F.linear+F.cross_entropy(softcapped)+z_loss": "_linear_head",
}
_JAX_APIS = {
    "jax.nn.softmax": "lambda x, y, class_axis=-1: jax.nn.softmax(x, axis=int(class_axis))",
    "jax.nn.log_softmax": (
        "lambda x, y, class_axis=-1: jax.nn.log_softmax(x, axis=int(class_axis))"
    ),
    "jax.nn.logsumexp": "lambda x, y, class_axis=-1: jax.nn.logsumexp(x, axis=int(class_axis))",
    "jax.scipy.special.logsumexp": (
        "lambda x, y, class_axis=-1: jax.scipy.special.logsumexp(x, axis=int(class_axis))"
    ),
    "optax.softmax_cross_entropy": "_optax_soft",
    "optax.softmax_cross_entropy_with_integer_labels": "_optax_sparse",
    "optax.safe_softmax_cross_entropy": "_optax_safe",
    "optax.softmax_cross_entropy_with_integer_labels(softcapped)+z_loss": "_optax_head_sparse",
    "optax.softmax_cross_entropy(softcapped)+z_loss": "_optax_head_soft",
    "jax.nn.log_softmax(softcapped)": "_head_log_softmax",
    "vocab_parallel_cross_entropy(simulated shards)": "_vocab_parallel",
    "optax.sigmoid_binary_cross_entropy": "lambda x, y: optax.sigmoid_binary_cross_entropy(x, y)",
    "x@w.T+optax.softmax_cross_entropy_with_integer_labels": "_linear_loss",
}
_TENSORFLOW_APIS = {
    "tf.nn.softmax": "_unlabelled(tf.nn.softmax)",
    "tf.nn.log_softmax": "_unlabelled(tf.nn.log_softmax)",
    "tf.math.reduce_logsumexp": "_unlabelled(tf.math.reduce_logsumexp)",
    "tf.nn.softmax_cross_entropy_with_logits": "_soft_nn",
    "tf.nn.sparse_softmax_cross_entropy_with_logits": "_sparse_nn",
    "keras.losses.categorical_crossentropy(from_logits=True)": "_keras_cce",
    "keras.losses.sparse_categorical_crossentropy(from_logits=True)": "_keras_scce",
    "keras.losses.CategoricalCrossentropy(from_logits=True)": (
        "_keras_class(keras.losses.CategoricalCrossentropy)"
    ),
    "keras.losses.SparseCategoricalCrossentropy(from_logits=True)": (
        "_keras_class(keras.losses.SparseCategoricalCrossentropy)"
    ),
    "tf.matmul+keras.losses.sparse_categorical_crossentropy": "_keras_linear_loss",
    # The LLM head's compositions (adapters/tensorflow_head.py).
    "tf.nn.sparse_softmax_cross_entropy_with_logits(softcapped)+z_loss": "_sparse",
    "keras.losses.categorical_crossentropy(softcapped,from_logits=True)+z_loss": "_keras_soft",
    "tf.nn.log_softmax(softcapped)": "_log_softmax",
}

_TORCH_RUN = """

OP = {expr}


def tensor(array):
    tensor = torch.tensor(array, device=torch.device(DEVICE))
    return tensor if tensor.dtype == torch.int64 else tensor.to(getattr(torch, DTYPE))


def run_linear(x, y):
    bias = OPTIONS.get("bias")
    tensors = [None if a is None else tensor(a) for a in (x, OPTIONS["weight"], bias)]
    wanted = {{"grad_hidden": 0, "grad_weight": 1, "grad_bias": 2}}.get(QUANTITY)
    if wanted is not None:
        tensors[wanted].requires_grad_(True)
    head = {{k: tensor(v) if isinstance(v, np.ndarray) else v
            for k, v in OPTIONS.items() if k in ("softcap", "temperature", "z_loss")}}
    output = OP(*tensors, tensor(y), int(OPTIONS.get("ignore_index", -100)), **head)
    if wanted is not None:
        (output,) = torch.autograd.grad(output.sum(), tensors[wanted])
    return output


def run_op(x, y):
    xt = tensor(x).requires_grad_(QUANTITY == "grad")
    y = None if y is None else tensor(y)
    options = {{k: tensor(v) if isinstance(v, np.ndarray) else v for k, v in OPTIONS.items()}}
    cotangent, tangent = options.pop("cotangent", None), options.pop("tangent", None)

    def function(logits, labels):
        return OP(logits, labels, **options)

    if QUANTITY == "jvp":  # compiled whole, as the adapter does
        tangent = torch.ones_like(xt) if tangent is None else tangent
        value = function

        def function(logits, labels, tangent):
            return torch.func.jvp(lambda z: value(z, labels), (logits,), (tangent,))[1]

    if MODE == "compiled":
        function = torch.compile(function, fullgraph=True)
    output = function(xt, y, tangent) if QUANTITY == "jvp" else function(xt, y)
    if QUANTITY == "grad" and cotangent is None:
        (output,) = torch.autograd.grad(output.sum(), xt)
    elif QUANTITY == "grad":
        (output,) = torch.autograd.grad(output, xt, grad_outputs=cotangent)
    return output


def run(x, y):
    output = run_linear(x, y) if "weight" in OPTIONS else run_op(x, y)
    return output.detach().to(torch.float64).cpu().numpy()
"""

_JAX_RUN = """

OP = {expr}


def run_linear(x, y):
    device = jax.devices("gpu" if DEVICE == "cuda" else "cpu")[0]
    dtype = getattr(jnp, DTYPE)
    bias = OPTIONS.get("bias")
    arrays = [None if a is None else jax.device_put(np.asarray(a).astype(dtype), device)
              for a in (x, OPTIONS["weight"], bias)]
    y = jax.device_put(y, device)
    ignore = OPTIONS.get("ignore_index")
    wanted = {{"grad_hidden": 0, "grad_weight": 1, "grad_bias": 2}}.get(QUANTITY)
    if wanted is None:
        function = functools.partial(OP, y=y, ignore_index=ignore)
    else:
        function = jax.grad(lambda x, w, b: jnp.sum(OP(x, w, b, y, ignore)), argnums=wanted)
    return function(*arrays)


def run_op(x, y):
    device = jax.devices("gpu" if DEVICE == "cuda" else "cpu")[0]
    dtype = getattr(jnp, DTYPE)
    options = {{k: v.astype(dtype) if isinstance(v, np.ndarray) else v
               for k, v in OPTIONS.items()}}
    direction = options.pop("cotangent", None)
    direction = options.pop("tangent", direction)
    if QUANTITY == "jvp" and direction is None:  # no tangent given: along ones
        direction = np.ones_like(x).astype(dtype)
    function = functools.partial(OP, **options) if options else OP
    function = _with_quantity(function, QUANTITY, direction is not None)
    if MODE == "compiled":
        function = jax.jit(function)
    xj = jax.device_put(x.astype(dtype), device)
    if y is not None:
        y = jax.device_put(y if y.dtype.kind == "i" else y.astype(dtype), device)
    extra = () if direction is None else (jax.device_put(np.asarray(direction), device),)
    return function(xj, y, *extra)


def run(x, y):
    output = run_linear(x, y) if "weight" in OPTIONS else run_op(x, y)
    return np.asarray(jax.block_until_ready(output)).astype(np.float64)
"""

_TENSORFLOW_RUN = """

OP = {expr}


def constant(array):
    if array.dtype.kind == "i":
        return tf.constant(array, tf.int64)
    return tf.cast(tf.constant(array, tf.float64), getattr(tf, DTYPE))


def run_linear(x, y):
    bias = OPTIONS.get("bias")
    tensors = [None if a is None else constant(a) for a in (x, OPTIONS["weight"], bias)]
    y, ignore = constant(y), OPTIONS.get("ignore_index")
    wanted = {{"grad_hidden": 0, "grad_weight": 1, "grad_bias": 2}}.get(QUANTITY)
    if wanted is None:
        return OP(*tensors, y, ignore)
    with tf.GradientTape() as tape:
        tape.watch(tensors[wanted])
        total = tf.reduce_sum(OP(*tensors, y, ignore))
    return tape.gradient(total, tensors[wanted])


def run_op(x, y):
    xt = constant(x)
    y = None if y is None else constant(y)
    options = {{k: constant(v) if isinstance(v, np.ndarray) else v for k, v in OPTIONS.items()}}
    direction = options.pop("cotangent", None)
    direction = options.pop("tangent", direction)
    if QUANTITY == "jvp" and direction is None:  # no tangent given: along ones
        direction = tf.ones_like(xt)
    function = functools.partial(OP, **options) if options else OP
    if direction is not None:
        function = with_direction(function, QUANTITY)
    else:
        function = _with_quantity(function, QUANTITY)
    if MODE == "compiled":
        function = tf.function(function, jit_compile=True)
    extra = () if direction is None else (direction,)
    return function(xt, y, *extra)


def run(x, y):
    with tf.device("/GPU:0" if DEVICE == "cuda" else "/CPU:0"):
        output = run_linear(x, y) if "weight" in OPTIONS else run_op(x, y)
    return tf.cast(output, tf.float64).numpy()
"""


def _sources(*functions) -> str:
    return "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in functions)


def _torch(expr: str) -> str:
    from xentbench.adapters import torch_adapter as t
    from xentbench.adapters import torch_head as h
    from xentbench.reference.shards import bounds

    definitions = _sources(
        t._softmax,
        t._log_softmax,
        t._logsumexp,
        t._loss_arguments,
        t._cross_entropy,
        t._nll_loss,
        t._binary_cross_entropy_with_logits,
        t._linear_then_cross_entropy,
        t._fused,
        t._chunking,
        h.softcapped,
        h._plus_z_loss,
        h._head_cross_entropy,
        h._head_unlabelled,
        bounds,
        h.vocab_parallel,
        t._linear_head,
    )
    header = "\nimport math\n\nimport torch\nimport torch.nn.functional as F\n\n"
    return (
        header + f"_REDUCTION = {t._REDUCTION!r}\n\n\n" + definitions + _TORCH_RUN.format(expr=expr)
    )


def _jax(expr: str) -> str:
    from xentbench.adapters import jax_adapter as j
    from xentbench.adapters import jax_head as h
    from xentbench.reference.shards import bounds

    definitions = _sources(
        j._reduce, j._optax_soft, j._optax_sparse, j._optax_safe, j._with_quantity, j._linear_loss
    )
    definitions += "\n\n" + _sources(
        h._head_softcapped,
        h._head_loss,
        h._optax_head_sparse,
        h._optax_head_soft,
        h._head_log_softmax,
        bounds,
        h._vocab_parallel,
    )
    header = (
        "\nimport functools\n\nimport jax\n\n"
        'jax.config.update("jax_enable_x64", True)\n'
        "import jax.numpy as jnp\nimport jax.scipy.special\nimport optax\n\n\n"
    )
    return header + definitions + _JAX_RUN.format(expr=expr)


def _tensorflow(expr: str) -> str:
    from xentbench.adapters import tensorflow_adapter as a
    from xentbench.adapters import tensorflow_head as h
    from xentbench.adapters import tensorflow_options as o

    definitions = _sources(
        o._soft_nn,
        o._sparse_nn,
        o._keras_cce,
        o._keras_scce,
        o._keras_class,
        o._unlabelled,
        o.with_direction,
        a._with_quantity,
        a._keras_linear_loss,
        h.softcapped,
        h._plus_z_loss,
        h._sparse,
        h._keras_soft,
        h._log_softmax,
    )
    header = (
        "\nimport functools\nimport math\nimport os\n\n"
        'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")\n'
        'os.environ.setdefault("KERAS_BACKEND", "tensorflow")\nimport keras\n'
        "import tensorflow as tf\n\n"
        "_TF_REDUCE = {\n"
        '    "none": lambda loss: loss,\n'
        '    "sum": tf.reduce_sum,\n'
        '    "sum_over_batch_size": tf.reduce_mean,\n'
        "}\n"
        f"_KERAS_REDUCTION = {o._KERAS_REDUCTION!r}\n\n\n"
    )
    return header + definitions + _TENSORFLOW_RUN.format(expr=expr)


def run_source(implementation: str) -> tuple[str, str] | None:
    """(framework, source defining ``run(x, y)`` from ``OPTIONS``), or None when the
    implementation has no option-taking snippet (a plugin, NumPy, ONNX Runtime)."""
    backend, api = backend_and_api(implementation)
    if backend == "torch" and api in _TORCH_APIS:
        return "PyTorch", _torch(_TORCH_APIS[api])
    if backend == "jax" and api in _JAX_APIS:
        return "JAX/optax", _jax(_JAX_APIS[api])
    if backend == "tensorflow" and api in _TENSORFLOW_APIS:
        return "TensorFlow/Keras", _tensorflow(_TENSORFLOW_APIS[api])
    return None
