"""Flawed and careful implementations for the error budget (``suites.judge.budget``).

Each flawed backend reproduces one bug class seen in real kernels, the rest of it done with
care (extended internals, one final rounding), so the flaw alone decides its verdict:

- 16-bit accumulation of the softmax sum (bfloat16 and float16), float32 computation inside a
  float64 op, exp evaluated in float16 on float32/float64 inputs, a gradient recomputed from a
  logsumexp rounded to the output dtype (as a backward that saved it in the output dtype);
- probability clipping to [1e-7, 1 - 1e-7] before the log;
- label wrap-around: a negative class id silently indexes from the end;
- 0 * -inf -> NaN: the soft cross-entropy as -sum(y * log_softmax) over a masked class;
- an online (flash-style) logsumexp over blocks of classes: a leading block of only -inf
  logits turning the row NaN, the last partial block dropped, the running sum not rescaled
  when the running max grows.

The careful backends compute every op and gradient with extended (x87 80-bit ``longdouble``)
or float64 internals and round once to the output dtype: the budget must never flag them on
finite inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xentbench.adapters.base import (
    DTYPES,
    GRADIENT_OPS,
    OPS,
    Adapter,
    Call,
    Implementation,
    PreparedCall,
    numpy_dtype,
)

BFLOAT16 = numpy_dtype("bfloat16")
ALL_DTYPES = DTYPES
SOFTMAX_OPS = ("softmax", "log_softmax", "logsumexp", "sparse_softmax_cross_entropy")
EVERY_OP = tuple(op for op in OPS if op != "linear_cross_entropy")  # the ops taking logits
EXTENDED = np.dtype(np.longdouble)


def _sum(values: np.ndarray) -> np.ndarray:
    return values.sum(axis=-1, keepdims=True)


def _sum_in(dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """A sum whose terms are stored and accumulated, one after another, in ``dtype``."""

    def total(values: np.ndarray) -> np.ndarray:
        terms = values.astype(dtype)
        return np.cumsum(terms, axis=-1, dtype=dtype)[..., -1:].astype(values.dtype)

    return total


def _exp_in(dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """exp evaluated in ``dtype`` (argument and result rounded to it)."""
    return lambda values: np.exp(values.astype(dtype)).astype(values.dtype)


def _rounded_once(values: np.ndarray, dtype: str) -> np.ndarray:
    """The internal result rounded to the output dtype: longdouble to float64 or float32 in one
    cast; to a 16-bit dtype through float32 (at most a float32 ULP beyond one rounding)."""
    if dtype in ("float16", "bfloat16"):
        target = BFLOAT16 if dtype == "bfloat16" else np.dtype(np.float16)
        return values.astype(np.float32).astype(target)
    return values.astype(dtype)


class Recipe:
    """The shifted algorithms in an internal dtype, with replaceable exp and sum; subclasses
    change one step to reproduce one flaw."""

    def __init__(self, internal=EXTENDED, exp=np.exp, total=_sum) -> None:
        self.internal, self.exp, self.total = np.dtype(internal), exp, total

    def internal_for(self, dtype: str) -> np.dtype:
        return self.internal

    def shifted(self, x: np.ndarray):
        """(d = x - max, p, log s) per row, in the internal dtype."""
        m = x.max(axis=-1, keepdims=True)
        d = x - m
        e = self.exp(d)
        s = self.total(e)
        return d, e / s, np.log(s)

    def label_index(self, labels: np.ndarray, n_classes: int) -> np.ndarray:
        k = np.asarray(labels).astype(np.int64)
        if ((k < 0) | (k >= n_classes)).any():
            raise ValueError(f"class ids must lie in [0, {n_classes})")
        return k

    def soft_value(self, y, d, log_s) -> np.ndarray:
        terms = np.where(y == 0, 0, y * (log_s - d))  # a zero label adds 0, even at d = -inf
        return terms.sum(axis=-1)

    def sparse_loss(self, d, log_s, k) -> np.ndarray:
        return (log_s - np.take_along_axis(d, k[..., None], axis=-1))[..., 0]

    def gradient_probabilities(self, x, d, p, log_s, dtype: str) -> np.ndarray:
        return p

    def compute(self, op: str, quantity: str, x: np.ndarray, y, dtype: str) -> np.ndarray:
        """The op's value or gradient (of the summed output, cotangent ones) in the internals."""
        if op == "sigmoid_cross_entropy":
            return self.sigmoid(quantity, x, y)
        d, p, log_s = self.shifted(x)
        if quantity == "grad" and op != "softmax":
            p = self.gradient_probabilities(x, d, p, log_s, dtype)
        if op == "softmax":
            return p
        if op == "log_softmax":
            return d - log_s
        if op == "logsumexp":
            return p if quantity == "grad" else (x.max(axis=-1, keepdims=True) + log_s)[..., 0]
        if op == "softmax_cross_entropy":
            if quantity == "grad":
                return p * y.sum(axis=-1, keepdims=True) - y
            return self.soft_value(y, d, log_s)
        k = self.label_index(y, x.shape[-1])
        if quantity == "grad":
            return p - (np.arange(x.shape[-1]) == k[..., None])
        return self.sparse_loss(d, log_s, k)

    def sigmoid(self, quantity: str, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        tail = self.exp(-np.abs(x))
        if quantity == "grad":
            return np.where(x >= 0, 1, tail) / (1 + tail) - z
        return np.maximum(x, 0) - x * z + np.log1p(tail)

    def __call__(self, op: str, quantity: str, logits, labels, dtype: str) -> np.ndarray:
        internal = self.internal_for(dtype)
        x = np.asarray(logits).astype(internal)
        y = labels
        if labels is not None and op != "sparse_softmax_cross_entropy":
            y = np.asarray(labels).astype(internal)
        with np.errstate(all="ignore"):
            return _rounded_once(self.compute(op, quantity, x, y, dtype), dtype)


class DtypeInternals(Recipe):
    """Internals in a dtype chosen per output dtype (float32 inside a float64 op)."""

    def __init__(self, internals: dict[str, str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.internals = internals

    def internal_for(self, dtype: str) -> np.dtype:
        return np.dtype(self.internals[dtype])


class RoundedLogsumexpGradient(Recipe):
    """A backward that saved logsumexp in the output dtype: p = exp(x - round(L))."""

    def gradient_probabilities(self, x, d, p, log_s, dtype: str) -> np.ndarray:
        saved = _rounded_once(x.max(axis=-1, keepdims=True) + log_s, dtype).astype(x.dtype)
        return np.exp(x - saved)


class ClippedProbabilities(Recipe):
    """-log(clip(p, eps, 1 - eps)) as Keras does with probabilities: losses capped near 16."""

    EPSILON = 1e-7

    def sparse_loss(self, d, log_s, k) -> np.ndarray:
        p = np.exp(np.take_along_axis(d, k[..., None], axis=-1)[..., 0] - log_s[..., 0])
        return -np.log(np.clip(p, self.EPSILON, 1 - self.EPSILON))

    def soft_value(self, y, d, log_s) -> np.ndarray:
        p = np.clip(np.exp(d - log_s), self.EPSILON, 1 - self.EPSILON)
        return -(y * np.log(p)).sum(axis=-1)


class WrappedLabels(Recipe):
    """Class ids indexed as Python does: -1 silently becomes the last class."""

    def label_index(self, labels: np.ndarray, n_classes: int) -> np.ndarray:
        k = np.asarray(labels).astype(np.int64)
        if (k >= n_classes).any():
            raise IndexError("class id out of range")
        return np.where(k < 0, k + n_classes, k)


class ZeroTimesInfinity(Recipe):
    """-sum(y * log_softmax(x)): a zero label on a -inf logit gives 0 * -inf = NaN."""

    def soft_value(self, y, d, log_s) -> np.ndarray:
        return (y * (log_s - d)).sum(axis=-1)


CHUNK = 4096  # classes per block, as a kernel's BLOCK_SIZE
CHUNK_FLAWS = ("masked-block-nan", "dropped-tail", "no-rescale")


class OnlineLogsumexp(Recipe):
    """The sum over blocks of ``CHUNK`` classes in one pass, as online (flash-style) softmax
    kernels take it: a running max m and a running sum s in m's scale, per block m' = max(m,
    block max), s = s exp(m - m') + sum exp(block - m'). With ``flaw``: "masked-block-nan"
    shifts by m' unguarded, so a leading block of only -inf gives -inf - (-inf) = NaN and the
    whole row is NaN; "dropped-tail" never reaches the last partial block; "no-rescale" adds
    each block's sum without bringing s to the new max's scale."""

    def __init__(self, flaw: str | None = None) -> None:
        super().__init__()
        if flaw not in (None, *CHUNK_FLAWS):
            raise ValueError(f"unknown flaw {flaw!r}; valid: {', '.join(CHUNK_FLAWS)}")
        self.flaw = flaw

    def shifted(self, x: np.ndarray):
        m = np.full((*x.shape[:-1], 1), -np.inf, dtype=x.dtype)
        s = np.zeros_like(m)
        classes = x.shape[-1]
        end = classes - classes % CHUNK if self.flaw == "dropped-tail" else classes
        for start in range(0, end, CHUNK):
            block = x[..., start : start + CHUNK]
            top = np.maximum(m, block.max(axis=-1, keepdims=True))
            shift = top if self.flaw == "masked-block-nan" else np.where(np.isneginf(top), 0, top)
            rescale = 1 if self.flaw == "no-rescale" else self.exp(m - shift)
            s = s * rescale + self.total(self.exp(block - shift))
            m = top
        d = x - m
        return d, self.exp(d) / s, np.log(s)


class RecipeAdapter(Adapter):
    """A plugin backend of one recipe, declaring its ops and dtypes (value and gradient)."""

    name = "flawed-budget"
    recipe: Recipe = Recipe()
    ops: tuple[str, ...] = EVERY_OP
    dtypes: tuple[str, ...] = ALL_DTYPES

    def version(self) -> str:
        return f"{type(self).__name__} 1.0"

    def implementations(self) -> tuple[Implementation, ...]:
        return tuple(
            Implementation(f"{self.name}:{op}", op, self.dtypes, gradient=op in GRADIENT_OPS)
            for op in self.ops
        )

    def prepare(self, call: Call, logits: np.ndarray, labels) -> PreparedCall:
        op, quantity, dtype = call.implementation.op, call.quantity, call.dtype
        return PreparedCall(
            run=lambda: self.recipe(op, quantity, logits, labels, dtype), to_numpy=np.asarray
        )


def _backend(name: str, recipe: Recipe, ops=EVERY_OP, dtypes=ALL_DTYPES) -> type[RecipeAdapter]:
    attributes = {"name": name, "recipe": recipe, "ops": ops, "dtypes": dtypes}
    return type(name.title().replace("-", ""), (RecipeAdapter,), attributes)


FLOAT32 = {name: "float32" for name in ALL_DTYPES}
Bf16Sum = _backend(
    "flawed-bf16-sum", DtypeInternals(FLOAT32, total=_sum_in(BFLOAT16)), SOFTMAX_OPS, ("bfloat16",)
)
F16Sum = _backend(
    "flawed-f16-sum",
    DtypeInternals(FLOAT32, total=_sum_in(np.dtype(np.float16))),
    SOFTMAX_OPS,
    ("float16",),
)
Float32InFloat64 = _backend("flawed-f32-in-f64", DtypeInternals(FLOAT32), dtypes=("float64",))
F16Exp = _backend(
    "flawed-f16-exp",
    DtypeInternals({"float32": "float32", "float64": "float64"}, exp=_exp_in(np.float16)),
    SOFTMAX_OPS,
    ("float32", "float64"),
)
RoundedLse = _backend(
    "flawed-rounded-lse",
    RoundedLogsumexpGradient(),
    ("logsumexp", "sparse_softmax_cross_entropy"),
)
Clipped = _backend(
    "flawed-clip",
    ClippedProbabilities(),
    ("softmax_cross_entropy", "sparse_softmax_cross_entropy"),
    ("float32", "float64"),
)
LabelWrap = _backend("flawed-label-wrap", WrappedLabels(), ("sparse_softmax_cross_entropy",))
ZeroInf = _backend("flawed-zero-inf", ZeroTimesInfinity(), ("softmax_cross_entropy",))
SOFTMAX_FAMILY_OPS = tuple(op for op in EVERY_OP if op != "sigmoid_cross_entropy")
F32 = ("float32",)
ChunkMasked = _backend(
    "flawed-chunk-masked", OnlineLogsumexp("masked-block-nan"), SOFTMAX_FAMILY_OPS, F32
)
ChunkTail = _backend("flawed-chunk-tail", OnlineLogsumexp("dropped-tail"), SOFTMAX_FAMILY_OPS, F32)
OnlineRescale = _backend(
    "flawed-online-rescale", OnlineLogsumexp("no-rescale"), SOFTMAX_FAMILY_OPS, F32
)
CarefulExtended = _backend("careful-extended", Recipe())
CarefulChunked = _backend("careful-chunked", OnlineLogsumexp(), SOFTMAX_FAMILY_OPS, F32)
CarefulFloat64 = _backend(
    "careful-float64", Recipe(internal=np.float64), dtypes=("float16", "bfloat16", "float32")
)

FLAWED = {
    "flawed-bf16-sum": "Bf16Sum",
    "flawed-f16-sum": "F16Sum",
    "flawed-f32-in-f64": "Float32InFloat64",
    "flawed-f16-exp": "F16Exp",
    "flawed-rounded-lse": "RoundedLse",
    "flawed-clip": "Clipped",
    "flawed-label-wrap": "LabelWrap",
    "flawed-zero-inf": "ZeroInf",
    "flawed-chunk-masked": "ChunkMasked",
    "flawed-chunk-tail": "ChunkTail",
    "flawed-online-rescale": "OnlineRescale",
}
CAREFUL = {
    "careful-extended": "CarefulExtended",
    "careful-float64": "CarefulFloat64",
    "careful-chunked": "CarefulChunked",
}
ENTRY_POINTS = {name: f"flawed.budget:{cls}" for name, cls in {**FLAWED, **CAREFUL}.items()}
