"""The accuracy case catalog: the declarative tables, family by family, and ``catalog()``.

Each table row is a ``Scenario`` (``suites.catalog.case``) expanded over the ops it applies to;
the options family's table is in ``suites.catalog.option_tables`` and the linear rows in
``suites.catalog.linear``. ``catalog()`` assembles them in ``FAMILIES`` order.
"""

from __future__ import annotations

from functools import cache

from xentbench.reference.evaluate import LINEAR_OP
from xentbench.suites.catalog.case import (
    FAMILIES,
    LABELLED_SOFTMAX,
    LOGITS_OPS,
    NOT_FLOAT16,
    SIGMOID_OP,
    SOFT,
    SPARSE,
    Case,
    Scenario,
)
from xentbench.suites.catalog.head_tables import HEAD_CASES, SHARD_CASES
from xentbench.suites.catalog.linear import LINEAR_ROWS
from xentbench.suites.catalog.option_tables import OPTION_CASES

__all__ = ["FAMILIES", "Case", "S", "Scenario", "catalog", "find"]

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
    S(
        "masked-blocks-32000",
        "masked_blocks",
        "runs of thousands of -inf classes: a chunk of only -inf adds 0, not NaN",
        {"live": 64},
        labels="unmasked",
        batch=4,
        classes=32000,
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

LINEAR = tuple(
    S(name, generator, why, params, ops=(LINEAR_OP,), batch=n, classes=c, hidden=d, **extra)
    for name, generator, params, n, d, c, extra, why in LINEAR_ROWS
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
    ("options", (*OPTION_CASES, *HEAD_CASES, *SHARD_CASES)),
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
