"""The accuracy case catalog: frozen cases built from declarative tables, with deterministic inputs.

A case names a logits generator (``GENERATORS`` of ``suites.catalog.generators``) with frozen
parameters and, for labelled ops, a label generator (``LABELS[op]``) that may look at the logits
(the argmax class, the masked classes). Inputs are drawn in float64 from a stream seeded by
``(seed, crc32(case.id))``, so a case draws the same numbers in every dtype, and are then
rounded to the dtype once; the reference is computed on exactly those rounded arrays.
Generators that depend on the dtype (near its max, one ULP apart, subnormal) scale by the
dtype's limits from ``finfo``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from adapters.base import LABELLED_OPS, OPS
from reference.dtypes import DTYPES, finfo, numpy_dtype
from reference.evaluate import quantities as reference_quantities
from reference.options import ACCEPTED, OPTION_NAMES
from suites.catalog import option_cases
from suites.catalog.generators import GENERATORS, LABELS, Draw, saved_labels
from suites.catalog.linear import IGNORE_INDEX, LINEAR_GENERATORS, LinearDraw

FAMILIES: tuple[str, ...] = (
    "benign",
    "extreme",
    "special",
    "soft_labels",
    "size",
    "sigmoid",
    "options",
    "linear",
    "hunted",
)
LINEAR_OP = "linear_cross_entropy"
SOFTMAX_FAMILY: tuple[str, ...] = OPS[:5]
LOGITS_OPS: tuple[str, ...] = tuple(op for op in OPS if op != LINEAR_OP)  # ops taking logits
LABELLED_SOFTMAX: tuple[str, ...] = ("softmax_cross_entropy", "sparse_softmax_cross_entropy")
NOT_FLOAT16: tuple[str, ...] = ("bfloat16", "float32", "float64")


# The case --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One accuracy case: an op, a family, and how to draw its inputs (see the module docstring).

    ``labels`` is the key of the label generator in ``LABELS[op]`` (ignored by unlabelled
    ops); ``invalid`` marks input outside the op's domain, where raising is the right answer.
    """

    op: str
    family: str
    name: str
    generator: str
    params: tuple[tuple[str, object], ...] = ()
    batch: int = 4
    classes: int = 16
    dtypes: tuple[str, ...] = DTYPES
    invalid: bool = False
    why: str = ""
    labels: str = "random"
    # The options family (suites.catalog.option_cases): call options (arrays as "@generator"),
    # the quantities evaluated (empty: value, and grad where the op has a plain gradient), the
    # fraction of sparse labels set to the ignored id, and a trailing axis of this size with
    # the classes moved to axis 1 ([batch, classes, depth], with class_axis=1).
    options: tuple[tuple[str, object], ...] = ()
    quantities: tuple[str, ...] = ()
    ignored: float = 0.0
    depth: int = 0
    # linear_cross_entropy only: features d, a bias, and the share of padding rows (labelled
    # IGNORE_INDEX, passed as the "ignore_index" option).
    hidden: int = 0
    bias: bool = False
    padding: float = 0.0

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError(f"case {self.id}: {'; '.join(problems)}")

    def _problems(self) -> Iterator[str]:
        if self.op not in OPS:
            yield f"unknown op {self.op!r}; valid: {', '.join(OPS)}"
        if self.family not in FAMILIES:
            yield f"unknown family {self.family!r}; valid: {', '.join(FAMILIES)}"
        generators = LINEAR_GENERATORS if self.op == LINEAR_OP else GENERATORS
        if self.generator not in generators:
            yield f"unknown generator {self.generator!r}; valid: {', '.join(generators)}"
        if (self.op == LINEAR_OP) != (self.hidden > 0):
            yield "linear_cross_entropy cases, and only they, need hidden > 0"
        if not self.dtypes or set(self.dtypes) - set(DTYPES):
            yield f"dtypes {self.dtypes} must be a non-empty subset of {DTYPES}"
        if self.op in LABELS and self.labels not in (*LABELS[self.op], "saved"):
            yield f"unknown {self.op} labels {self.labels!r}; valid: {', '.join(LABELS[self.op])}"
        if self.invalid and self.op != "sparse_softmax_cross_entropy":
            yield "only sparse labels can be invalid"
        if min(self.batch, self.classes) < 1:
            yield f"batch {self.batch} and classes {self.classes} must be positive"
        names = dict(self.options)
        if set(names) - set(OPTION_NAMES):
            yield f"unknown options {sorted(set(names) - set(OPTION_NAMES))}"
        if self.depth and names.get("class_axis") != 1:
            yield "a depth needs class_axis=1"
        if self.ignored and "ignore_index" not in names:
            yield "ignored labels need ignore_index"

    @property
    def evaluated_quantities(self) -> tuple[str, ...]:
        """The quantities this case defines (see ``quantities``)."""
        return self.quantities or reference_quantities(self.op)

    @property
    def id(self) -> str:
        return f"{self.op}/{self.family}/{self.name}"

    def inputs(self, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits ``[batch, classes]`` in ``dtype`` and labels (None, int64 ids, or ``dtype``);
        for the linear op the hidden ``[batch, hidden]`` in their place (see ``call_options``)."""
        if self.op == LINEAR_OP:
            hidden, labels, _ = self.linear_inputs(dtype, seed)
            return hidden, labels
        _, logits, labels = self._draw(dtype, seed)
        target = numpy_dtype(dtype)
        if labels is not None:
            labels = labels.astype(np.int64 if labels.dtype.kind in "iu" else target)
        return logits.astype(target), labels

    def call_options(self, dtype: str, seed: int, quantity: str) -> dict[str, object]:
        """The call options for ``quantity`` (arrays drawn after the inputs, rounded to
        ``dtype`` once): the options family's, the linear op's weight, bias and ignore_index,
        or {} for every other case."""
        if self.op == LINEAR_OP:
            return self.linear_inputs(dtype, seed)[2]
        if not self.options:
            return {}
        rng, logits, labels = self._draw(dtype, seed)
        drawn = option_cases.draw_options(self, rng, logits, labels, quantity)
        target = numpy_dtype(dtype)
        return {
            name: value.astype(target) if isinstance(value, np.ndarray) else value
            for name, value in drawn.items()
        }

    def _draw(self, dtype: str, seed: int):
        """(the stream, float64 logits, labels as drawn) in the case's layout."""
        target, rng = self._stream(dtype, seed)
        limits = finfo(target)
        rows = self.batch * max(self.depth, 1)
        draw = Draw(
            rng,
            (rows, self.classes),
            float(limits.max),
            float(limits.eps),
            float(limits.smallest_subnormal),
        )
        logits = GENERATORS[self.generator](draw, **dict(self.params))
        labels = None
        if self.op in LABELS and self.labels == "saved":  # a promoted hunted input's labels
            labels = saved_labels(**dict(self.params))
        elif self.op in LABELS:
            labels = LABELS[self.op][self.labels](rng, logits)
        if self.ignored:
            labels = option_cases.ignore_labels(rng, labels, self.ignored)
        if self.depth:  # rows (b, d) -> [batch, classes, depth]
            logits = logits.reshape(self.batch, self.depth, -1).transpose(0, 2, 1)
            if labels is not None and labels.ndim == 2:
                labels = labels.reshape(self.batch, self.depth, -1).transpose(0, 2, 1)
            elif labels is not None:
                labels = labels.reshape(self.batch, self.depth)
        return rng, np.asarray(logits), labels

    def _stream(self, dtype: str, seed: int) -> tuple[np.dtype, np.random.Generator]:
        if dtype not in self.dtypes:
            raise ValueError(f"case {self.id} is not defined for {dtype}; it has {self.dtypes}")
        return numpy_dtype(dtype), np.random.default_rng([seed, zlib.crc32(self.id.encode())])

    def linear_inputs(self, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """(hidden [N, d], int64 labels [N], options) of a linear case, rounded to ``dtype``."""
        target, rng = self._stream(dtype, seed)
        draw = LinearDraw(rng, self.batch, self.classes, self.hidden)
        hidden, weight, labels = LINEAR_GENERATORS[self.generator](draw, **dict(self.params))
        options: dict[str, object] = {"weight": weight.astype(target)}
        if self.bias:
            options["bias"] = rng.normal(size=self.classes).astype(target)
        if self.padding:
            padded = rng.random(self.batch) < self.padding
            labels = np.where(padded, IGNORE_INDEX, labels)
            options["ignore_index"] = IGNORE_INDEX
        return hidden.astype(target), labels.astype(np.int64), options


# Declarative tables: scenarios expanded over the ops they apply to -----------------------


@dataclass(frozen=True)
class Scenario:
    """A case without its op and family: one row of a table."""

    name: str
    generator: str
    why: str
    params: dict[str, object] = field(default_factory=dict)
    labels: str = "random"
    ops: tuple[str, ...] = SOFTMAX_FAMILY
    dtypes: tuple[str, ...] = DTYPES
    batch: int = 4
    classes: int = 16
    invalid: bool = False
    options: dict[str, object] = field(default_factory=dict)
    quantities: tuple[str, ...] = ()
    ignored: float = 0.0
    depth: int = 0
    hidden: int = 0
    bias: bool = False
    padding: float = 0.0

    def cases(self, family: str) -> list[Case]:
        return [
            Case(
                op=op,
                family=family,
                name=self.name,
                generator=self.generator,
                params=tuple(sorted(self.params.items())),
                batch=self.batch,
                classes=self.classes,
                dtypes=self.dtypes,
                invalid=self.invalid,
                why=self.why,
                labels=self.labels if op in LABELLED_OPS else "random",
                options=self._options_for(op),
                quantities=self.quantities,
                ignored=self.ignored if op == "sparse_softmax_cross_entropy" else 0.0,
                depth=self.depth,
                hidden=self.hidden,
                bias=self.bias,
                padding=self.padding,
            )
            for op in self.ops
        ]

    def _options_for(self, op: str) -> tuple[tuple[str, object], ...]:
        """The options ``op`` accepts (ignore_index is for sparse labels only)."""
        accepted = ACCEPTED.get(op, ())
        kept = {name: value for name, value in self.options.items() if name in accepted}
        if op != "sparse_softmax_cross_entropy":
            kept.pop("ignore_index", None)
        return tuple(sorted(kept.items()))


S = Scenario
BENIGN = (
    S("normal-4x16", "normal", "typical logits: the baseline every implementation passes"),
    S("normal-64x128", "normal", "more rows and classes", batch=64, classes=128),
    S("wide-8x1000", "normal", "classifier rows, std 3", {"scale": 3.0}, batch=8, classes=1000),
)
EXTREME = (
    S("magnitude-1e2", "uniform", "exp overflows float16 past 11", {"scale": 1e2}),
    S("magnitude-1e4", "uniform", "exp overflows every dtype", {"scale": 1e4}),
    S(
        "magnitude-1e30",
        "uniform",
        "float32 spacing ~1e23 here",
        {"scale": 1e30},
        dtypes=NOT_FLOAT16,
    ),
    S("near-max", "near_max", "±0.9·max: x - logsumexp is -inf, rightly", {"signed": True}),
    S("near-max-positive", "near_max", "0.9·max: a max-shift must not overflow", {"signed": False}),
    S("spread-1e4", "spread", "a row spans -1e4..1e4: most terms underflow", {"scale": 1e4}),
    S("all-equal", "constant", "ties: softmax is exactly 1/C, logsumexp x + log C"),
    S("adjacent-floats", "adjacent", "logits one ULP apart and tied: the dtype's resolution"),
    S("dominant", "dominant", "sure and right: loss ~C·e^-50", {"gap": 50.0}, labels="argmax"),
    S(
        "dominant-label-elsewhere",
        "dominant",
        "sure and wrong: a loss near 50",
        {"gap": 50.0},
        labels="not-argmax",
        ops=LABELLED_SOFTMAX,
    ),
    S("subnormal", "subnormal", "subnormal and zero logits: flushing them changes little"),
    S("negative-only", "uniform", "exp underflows in float64", {"scale": 25.0, "shift": -775.0}),
    S(
        "quantised-1000",
        "grid",
        "1/8 steps in ±8: exact shifts (16 in bfloat16 .. 2^49) must change nothing",
        {"step": 0.125, "scale": 8.0},
        batch=8,
        classes=1000,
    ),
)
SPECIAL = (
    S(
        "masked",
        "masked",
        "-inf masks: label 0 there adds 0, not NaN",
        {"count": 2},
        labels="unmasked",
    ),
    S(
        "masked-label-on-masked",
        "masked",
        "label on a -inf class: loss +inf",
        {"count": 2},
        labels="on-masked",
        ops=LABELLED_SOFTMAX,
    ),
    S("all-masked-rows", "all_masked", "rows of only -inf: NaN (logsumexp -inf), others intact"),
    S(
        "plus-inf",
        "plus_inf",
        "one +inf: one-hot softmax, loss 0 or +inf",
        {"count": 1},
        labels="alternate",
    ),
    S(
        "two-plus-inf",
        "plus_inf",
        "two +inf: NaN split, logsumexp +inf",
        {"count": 2},
        labels="alternate",
    ),
    S(
        "plus-and-minus-inf",
        "mixed_inf",
        "+inf beside a masked class in one row",
        labels="alternate",
    ),
    S("nan", "nan", "a NaN makes its row NaN and no other row"),
)
SOFT = ("softmax_cross_entropy",)
SPARSE = ("sparse_softmax_cross_entropy",)
LABEL_CASES = (
    S("one-hot", "normal", "hard labels as probabilities", labels="one-hot", ops=SOFT),
    S("smoothed-0.1", "normal", "label smoothing eps 0.1", labels="smoothed", ops=SOFT),
    S("arbitrary", "normal", "Dirichlet(0.2): many tiny weights", labels="spiky", ops=SOFT),
    S("sum-0.5", "normal", "grad is softmax·sum(y) - y", labels="sum-0.5", ops=SOFT),
    S("sum-2", "normal", "nothing may assume sum(y) = 1", labels="sum-2", ops=SOFT),
    S("zero-classes", "normal", "0·log p terms vanish", labels="zero-classes", ops=SOFT),
    S(
        "masked-smoothed",
        "masked",
        "smoothing over -inf classes: loss +inf",
        {"count": 2},
        labels="smoothed",
        ops=SOFT,
    ),
    S("label-first", "normal", "class 0", labels="first", ops=SPARSE),
    S("label-last", "normal", "class C-1, the last valid id", labels="last", ops=SPARSE),
    S(
        "label-minus-one",
        "normal",
        "-1 is no class: raise (torch ignores -100)",
        labels="minus-one",
        ops=SPARSE,
        invalid=True,
    ),
    S(
        "label-classes",
        "normal",
        "C is off by one: raise, a number is wrong",
        labels="classes",
        ops=SPARSE,
        invalid=True,
    ),
)
SIZES = tuple(
    S(name, "normal", why, {"scale": 3.0}, ops=LOGITS_OPS, batch=batch, classes=classes)
    for name, batch, classes, why in (
        ("classes-1", 4, 1, "one class: softmax 1, log_softmax 0, loss 0"),
        ("classes-2", 4, 2, "two classes: softmax is a sigmoid of the difference"),
        ("classes-1000", 4, 1000, "ImageNet-sized rows"),
        ("classes-32000", 2, 32000, "LLM vocabulary (32k): long reductions"),
        ("classes-128000", 2, 128000, "LLM vocabulary (128k): long reductions"),
        ("classes-256000", 1, 256000, "LLM vocabulary (256k): the longest reductions"),
        ("batch-1", 1, 16, "a single row"),
        ("batch-256", 256, 16, "many short rows"),
    )
)
SIGMOID_OP = ("sigmoid_cross_entropy",)
SIGMOID = (
    *(
        S(
            f"logit-{text}-label-{label_text}",
            "signed",
            why,
            {"magnitude": magnitude},
            labels=label,
            ops=SIGMOID_OP,
        )
        for magnitude, text in ((30.0, "30"), (100.0, "100"), (1e4, "1e4"))
        for label, label_text, why in (
            ("zero", "0", "label 0: loss ~x for x > 0, ~e^x (log1p) for x < 0"),
            ("one", "1", "label 1: loss ~-x for x < 0, ~e^-x (log1p) for x > 0"),
            ("fraction", "0.3", "label 0.3: loss 0.7x or -0.3x, large on both sides"),
        )
    ),
    S("normal", "normal", "typical logits, labels in [0, 1]", ops=SIGMOID_OP),
    S("normal-binary", "normal", "typical logits, 0/1 labels", labels="binary", ops=SIGMOID_OP),
    S("zeros", "constant", "zero logits: loss log 2", {"value": 0.0}, ops=SIGMOID_OP),
    S(
        "near-max",
        "near_max",
        "±0.9·max: finite loss",
        {"signed": True},
        labels="mixed",
        ops=SIGMOID_OP,
    ),
    S("infinite", "infinite", "±inf: loss 0 or +inf", labels="mixed", ops=SIGMOID_OP),
    S("nan", "nan", "NaN gives NaN there and nowhere else", ops=SIGMOID_OP),
)

# The options family: cross-entropy as it is called, and derivatives along given directions.
UNLABELLED = ("softmax", "log_softmax", "logsumexp")
IGNORE = option_cases.IGNORE
MEAN_IGNORE = {"reduction": "mean", "ignore_index": IGNORE}
GRAD, JVP, VALUE_GRAD = ("grad",), ("jvp",), ("value", "grad")
OPTION_CASES = (
    S(
        "mean-large-batch",
        "dominant",
        "mean of 4096 losses near 20: a float16 sum overflows (pytorch#85791)",
        {"gap": 20.0},
        labels="not-argmax",
        ops=LABELLED_SOFTMAX,
        batch=4096,
        classes=8,
        options={"reduction": "mean"},
        quantities=VALUE_GRAD,
    ),
    S(
        "sum-large-batch",
        "normal",
        "sum of 4096 losses near 2.5: a float16 accumulator stalls",
        ops=SPARSE,
        batch=4096,
        classes=8,
        options={"reduction": "sum"},
        quantities=VALUE_GRAD,
    ),
    S(
        "batch-size-mean-large",
        "normal",
        "sum_over_batch_size (Keras, tf.reduce_mean) of 4096 soft losses",
        ops=SOFT,
        batch=4096,
        classes=8,
        options={"reduction": "sum_over_batch_size"},
        quantities=VALUE_GRAD,
    ),
    S(
        "ignore-90pct",
        "normal",
        "padding-heavy: 90% ignored, the mean is over the rest",
        ops=SPARSE,
        batch=64,
        options=MEAN_IGNORE,
        ignored=0.9,
        quantities=VALUE_GRAD,
    ),
    S(
        "all-ignored",
        "normal",
        "every row ignored: the mean over zero rows is NaN, its gradient 0",
        ops=SPARSE,
        batch=8,
        options=MEAN_IGNORE,
        ignored=1.0,
        quantities=VALUE_GRAD,
    ),
    S(
        "mean-over-valid",
        "normal",
        "half ignored, sum / kept rows (Keras ignore_class, optax where=)",
        ops=SPARSE,
        batch=32,
        options={"reduction": "mean_over_valid", "ignore_index": IGNORE},
        ignored=0.5,
        quantities=VALUE_GRAD,
    ),
    S(
        "llm-mean-ignore-smoothing",
        "normal",
        "the LLM configuration: mean, a quarter ignored, label smoothing 0.1",
        {"scale": 3.0},
        ops=SPARSE,
        batch=64,
        classes=128,
        options={**MEAN_IGNORE, "label_smoothing": 0.1},
        ignored=0.25,
        quantities=VALUE_GRAD,
    ),
    S(
        "smoothing-extreme",
        "uniform",
        "smoothing 0.1 on logits of ±1e4: every class's log-probability counts",
        {"scale": 1e4},
        ops=LABELLED_SOFTMAX,
        options={"label_smoothing": 0.1},
        quantities=VALUE_GRAD,
    ),
    S(
        "smoothing-masked",
        "masked",
        "smoothing puts eps/C on -inf classes: loss +inf",
        {"count": 2},
        labels="unmasked",
        ops=LABELLED_SOFTMAX,
        options={"label_smoothing": 0.1},
        quantities=VALUE_GRAD,
    ),
    S(
        "class-weights-spread",
        "normal",
        "class weights from 1e-3 to 1e3, summed",
        ops=LABELLED_SOFTMAX,
        options={"reduction": "sum", "class_weight": "@class-weights-spread"},
        quantities=VALUE_GRAD,
    ),
    S(
        "class-weights-spread-mean",
        "normal",
        "weighted mean sum(w_y l) / sum(w_y) over kept rows, weights 1e-3..1e3",
        ops=SPARSE,
        batch=32,
        options={**MEAN_IGNORE, "class_weight": "@class-weights-spread"},
        ignored=0.25,
        quantities=VALUE_GRAD,
    ),
    S(
        "sample-weights-spread",
        "normal",
        "sample weights 1e-3..1e3 and zeros, sum(sw l) / N",
        ops=LABELLED_SOFTMAX,
        batch=32,
        options={"reduction": "sum_over_batch_size", "sample_weight": "@sample-weights-spread"},
        quantities=VALUE_GRAD,
    ),
    S(
        "sample-weights-mean",
        "normal",
        "sample weights 1e-3..1e3 and zeros, sum(sw l) / sum(sw)",
        ops=LABELLED_SOFTMAX,
        batch=32,
        options={"reduction": "mean", "sample_weight": "@sample-weights-spread"},
        quantities=VALUE_GRAD,
    ),
    S(
        "class-axis-1",
        "normal",
        "[batch, classes, depth] with the classes on axis 1",
        ops=SOFTMAX_FAMILY,
        depth=3,
        options={"class_axis": 1},
        quantities=("value",),
    ),
    S(
        "class-axis-1-smoothing",
        "normal",
        "smoothing on axis 1: eps / C with C = 16 classes, not the depth 3 (keras#23451)",
        ops=LABELLED_SOFTMAX,
        depth=3,
        options={"class_axis": 1, "label_smoothing": 0.2},
        quantities=VALUE_GRAD,
    ),
    S(
        "cotangent-normal",
        "normal",
        "a random cotangent: softmax and log_softmax get gradients too",
        ops=SOFTMAX_FAMILY,
        options={"cotangent": "@normal"},
        quantities=GRAD,
    ),
    S(
        "cotangent-zero-on-masked-rows",
        "all_masked",
        "all -inf rows under a zero cotangent contribute 0, not NaN (pytorch#31829, jax#6811)",
        ops=SOFTMAX_FAMILY,
        options={"cotangent": "@zero-on-masked-rows"},
        quantities=GRAD,
    ),
    S(
        "cotangent-extreme",
        "normal",
        "cotangents of 2^-12 and 2^12 side by side",
        ops=SOFTMAX_FAMILY,
        options={"cotangent": "@extreme"},
        quantities=GRAD,
    ),
    S(
        "cotangent-mean-ignore",
        "normal",
        "a scalar cotangent through a mean with ignored rows",
        ops=SPARSE,
        batch=32,
        options={**MEAN_IGNORE, "cotangent": "@normal"},
        ignored=0.25,
        quantities=GRAD,
    ),
    S(
        "tangent-normal",
        "normal",
        "forward mode along a random tangent",
        ops=SOFTMAX_FAMILY,
        options={"tangent": "@normal"},
        quantities=JVP,
    ),
    S(
        "tangent-masked",
        "masked",
        "forward mode through -inf classes with label 0: finite (optax PR #1762)",
        {"count": 2},
        labels="unmasked",
        ops=SOFTMAX_FAMILY,
        options={"tangent": "@normal"},
        quantities=JVP,
    ),
    S(
        "tangent-mean-ignore-smoothing",
        "normal",
        "forward mode through the LLM configuration",
        ops=SPARSE,
        batch=32,
        options={**MEAN_IGNORE, "label_smoothing": 0.1, "tangent": "@normal"},
        ignored=0.25,
        quantities=JVP,
    ),
)
LINEAR = tuple(
    S(name, generator, why, params, ops=(LINEAR_OP,), batch=n, classes=c, hidden=d, **extra)
    for name, generator, params, n, d, c, extra, why in (
        ("normal", "normal", {}, 8, 32, 100, {}, "typical logits (std 3): the baseline"),
        ("bias", "normal", {}, 8, 32, 100, {"bias": True}, "a bias [C] and its gradient"),
        (
            "confident",
            "confident",
            {"gap": 12.0},
            4,
            64,
            256,
            {},
            "softmax_y ~ 1 - 0.002 rounds to 1 in bfloat16: p_y - 1 must not be formed there",
        ),
        (
            "offset-1000",
            "offset",
            {"offset": 1000.0},
            4,
            32,
            128,
            {},
            "a common logit offset of 1000: the loss must not move with it",
        ),
        (
            "hundreds-128k",
            "normal",
            {"scale": 300.0},
            2,
            16,
            131072,
            {},
            "|logit| in the hundreds over 128k classes: logits kept in 16 bits lose the softmax",
        ),
        (
            "padding-75pct",
            "normal",
            {},
            32,
            32,
            200,
            {"padding": 0.75},
            "3 rows in 4 padded (ignore_index -100): no loss, no gradient, no division by N",
        ),
        (
            "chunk-boundaries",
            "normal",
            {},
            37,
            48,
            1031,
            {"bias": True},
            "N = 37 and C = 1031 (prime): every chunk size leaves a ragged last chunk",
        ),
        ("hidden-4096", "normal", {}, 4, 4096, 256, {}, "d = 4096: long dot products"),
    )
)
# Hunted failures promoted into the catalog: one line each, as ``xentbench report``'s Hunt
# section prints it, with the input's .npy files copied into suites/catalog/saved/.
HUNTED: tuple[Scenario, ...] = (
    S(
        "subnormal-probability",
        "saved",
        "hunted (jax.nn.softmax): p = e^-87.4, a float32 subnormal, flushed to 0",
        {"logits": "19431f42124a-logits.npy"},
        ops=("softmax", "logsumexp"),
        dtypes=("float32",),
        batch=1,
        classes=2,
    ),
)
TABLES: tuple[tuple[str, tuple[Scenario, ...]], ...] = (
    ("benign", BENIGN),
    ("extreme", EXTREME),
    ("special", SPECIAL),
    ("soft_labels", LABEL_CASES),
    ("size", SIZES),
    ("sigmoid", SIGMOID),
    ("options", OPTION_CASES),
    ("linear", LINEAR),
    ("hunted", HUNTED),
)


@cache
def catalog() -> tuple[Case, ...]:
    """Every case, in table order."""
    cases = tuple(case for family, table in TABLES for row in table for case in row.cases(family))
    duplicates = {case.id for case in cases if sum(other.id == case.id for other in cases) > 1}
    if duplicates:
        raise ValueError(f"duplicate case ids: {sorted(duplicates)}")
    return cases


@cache
def _by_id() -> dict[str, Case]:
    return {case.id: case for case in catalog()}


def find(case_id: str) -> Case:
    """The case with this id (``op/family/name``)."""
    try:
        return _by_id()[case_id]
    except KeyError:
        raise KeyError(
            f"no case {case_id!r}; ids look like 'softmax/extreme/magnitude-1e30' "
            f"({len(catalog())} cases)"
        ) from None
