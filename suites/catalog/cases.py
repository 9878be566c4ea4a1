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
from suites.catalog.generators import GENERATORS, LABELS, Draw, saved_labels

FAMILIES: tuple[str, ...] = (
    "benign",
    "extreme",
    "special",
    "soft_labels",
    "size",
    "sigmoid",
    "hunted",
)
SOFTMAX_FAMILY: tuple[str, ...] = OPS[:5]
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

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError(f"case {self.id}: {'; '.join(problems)}")

    def _problems(self) -> Iterator[str]:
        if self.op not in OPS:
            yield f"unknown op {self.op!r}; valid: {', '.join(OPS)}"
        if self.family not in FAMILIES:
            yield f"unknown family {self.family!r}; valid: {', '.join(FAMILIES)}"
        if self.generator not in GENERATORS:
            yield f"unknown generator {self.generator!r}; valid: {', '.join(GENERATORS)}"
        if not self.dtypes or set(self.dtypes) - set(DTYPES):
            yield f"dtypes {self.dtypes} must be a non-empty subset of {DTYPES}"
        if self.op in LABELS and self.labels not in (*LABELS[self.op], "saved"):
            yield f"unknown {self.op} labels {self.labels!r}; valid: {', '.join(LABELS[self.op])}"
        if self.invalid and self.op != "sparse_softmax_cross_entropy":
            yield "only sparse labels can be invalid"
        if min(self.batch, self.classes) < 1:
            yield f"batch {self.batch} and classes {self.classes} must be positive"

    @property
    def id(self) -> str:
        return f"{self.op}/{self.family}/{self.name}"

    def inputs(self, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits ``[batch, classes]`` in ``dtype`` and labels (None, int64 ids, or ``dtype``)."""
        if dtype not in self.dtypes:
            raise ValueError(f"case {self.id} is not defined for {dtype}; it has {self.dtypes}")
        target = numpy_dtype(dtype)
        limits = finfo(target)
        rng = np.random.default_rng([seed, zlib.crc32(self.id.encode())])
        draw = Draw(
            rng,
            (self.batch, self.classes),
            float(limits.max),
            float(limits.eps),
            float(limits.smallest_subnormal),
        )
        logits = GENERATORS[self.generator](draw, **dict(self.params))
        if self.op not in LABELS:
            return logits.astype(target), None
        if self.labels == "saved":  # a promoted hunted input: its labels file, as saved
            labels = saved_labels(**dict(self.params))
        else:
            labels = LABELS[self.op][self.labels](rng, logits)
        labels = labels.astype(np.int64 if labels.dtype.kind in "iu" else target)
        return logits.astype(target), labels


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
            )
            for op in self.ops
        ]


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
    S(name, "normal", why, {"scale": 3.0}, ops=OPS, batch=batch, classes=classes)
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
