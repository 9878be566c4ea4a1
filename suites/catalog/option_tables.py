"""The options family's table: cross-entropy as it is called (reductions, ignored labels,
smoothing, weights, a moved class axis) and derivatives along given directions.

Rows are grouped by what they share, so each group states its shared settings once; the
option generators (``@name`` arrays, ignored labels) are in ``suites.catalog.option_cases``.
"""

from __future__ import annotations

from xentbench.suites.catalog.case import LABELLED_SOFTMAX, SOFT, SOFTMAX_FAMILY, SPARSE, Scenario
from xentbench.suites.catalog.option_cases import IGNORE

MEAN_IGNORE = {"reduction": "mean", "ignore_index": IGNORE}
GRAD, JVP, VALUE_GRAD = ("grad",), ("jvp",), ("value", "grad")
LARGE = {"batch": 4096, "classes": 8}  # a long reduction over the batch

REDUCTIONS = (
    Scenario(
        "mean-large-batch",
        "dominant",
        "mean of 4096 losses near 20: a float16 sum overflows (pytorch#85791)",
        {"gap": 20.0},
        labels="not-argmax",
        ops=LABELLED_SOFTMAX,
        options={"reduction": "mean"},
        quantities=VALUE_GRAD,
        **LARGE,
    ),
    *(
        Scenario(
            name, "normal", why, ops=ops, options={"reduction": how}, quantities=VALUE_GRAD, **LARGE
        )
        for name, ops, how, why in (
            (
                "sum-large-batch",
                SPARSE,
                "sum",
                "sum of 4096 losses near 2.5: a float16 accumulator stalls",
            ),
            (
                "batch-size-mean-large",
                SOFT,
                "sum_over_batch_size",
                "sum_over_batch_size (Keras, tf.reduce_mean) of 4096 soft losses",
            ),
        )
    ),
)
# Sparse labels with ignored rows under a mean: (name, extra options, batch, ignored share,
# quantities, why); the llm row below draws wider logits.
IGNORED = tuple(
    Scenario(
        name,
        "normal",
        why,
        ops=SPARSE,
        batch=batch,
        options={**MEAN_IGNORE, **extra},
        ignored=ignored,
        quantities=quantities,
    )
    for name, extra, batch, ignored, quantities, why in (
        (
            "ignore-90pct",
            {},
            64,
            0.9,
            VALUE_GRAD,
            "padding-heavy: 90% ignored, the mean is over the rest",
        ),
        (
            "all-ignored",
            {},
            8,
            1.0,
            VALUE_GRAD,
            "every row ignored: the mean over zero rows is NaN, its gradient 0",
        ),
        (
            "mean-over-valid",
            {"reduction": "mean_over_valid"},
            32,
            0.5,
            VALUE_GRAD,
            "half ignored, sum / kept rows (Keras ignore_class, optax where=)",
        ),
    )
)
LLM = Scenario(
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
)
SMOOTHING = (
    Scenario(
        "smoothing-extreme",
        "uniform",
        "smoothing 0.1 on logits of ±1e4: every class's log-probability counts",
        {"scale": 1e4},
        ops=LABELLED_SOFTMAX,
        options={"label_smoothing": 0.1},
        quantities=VALUE_GRAD,
    ),
    Scenario(
        "smoothing-masked",
        "masked",
        "smoothing puts eps/C on -inf classes: loss +inf",
        {"count": 2},
        labels="unmasked",
        ops=LABELLED_SOFTMAX,
        options={"label_smoothing": 0.1},
        quantities=VALUE_GRAD,
    ),
)
CLASS_WEIGHTS = "@class-weights-spread"
SAMPLE_WEIGHTS = "@sample-weights-spread"
# Weighted losses: (name, ops, batch, options, ignored share, why)
WEIGHTS = tuple(
    Scenario(
        name,
        "normal",
        why,
        ops=ops,
        batch=batch,
        options=options,
        ignored=ignored,
        quantities=VALUE_GRAD,
    )
    for name, ops, batch, options, ignored, why in (
        (
            "class-weights-spread",
            LABELLED_SOFTMAX,
            4,
            {"reduction": "sum", "class_weight": CLASS_WEIGHTS},
            0.0,
            "class weights from 1e-3 to 1e3, summed",
        ),
        (
            "class-weights-spread-mean",
            SPARSE,
            32,
            {**MEAN_IGNORE, "class_weight": CLASS_WEIGHTS},
            0.25,
            "weighted mean sum(w_y l) / sum(w_y) over kept rows, weights 1e-3..1e3",
        ),
        (
            "sample-weights-spread",
            LABELLED_SOFTMAX,
            32,
            {"reduction": "sum_over_batch_size", "sample_weight": SAMPLE_WEIGHTS},
            0.0,
            "sample weights 1e-3..1e3 and zeros, sum(sw l) / N",
        ),
        (
            "sample-weights-mean",
            LABELLED_SOFTMAX,
            32,
            {"reduction": "mean", "sample_weight": SAMPLE_WEIGHTS},
            0.0,
            "sample weights 1e-3..1e3 and zeros, sum(sw l) / sum(sw)",
        ),
    )
)
CLASS_AXIS = (
    Scenario(
        "class-axis-1",
        "normal",
        "[batch, classes, depth] with the classes on axis 1",
        ops=SOFTMAX_FAMILY,
        depth=3,
        options={"class_axis": 1},
        quantities=("value",),
    ),
    Scenario(
        "class-axis-1-smoothing",
        "normal",
        "smoothing on axis 1: eps / C with C = 16 classes, not the depth 3 (keras#23451)",
        ops=LABELLED_SOFTMAX,
        depth=3,
        options={"class_axis": 1, "label_smoothing": 0.2},
        quantities=VALUE_GRAD,
    ),
)


def _through_mean_ignore(name: str, extra: dict, quantities: tuple[str, ...], why: str) -> Scenario:
    """A direction through a mean over sparse labels with a quarter of the rows ignored."""
    options = {**MEAN_IGNORE, **extra}
    return Scenario(
        name,
        "normal",
        why,
        ops=SPARSE,
        batch=32,
        options=options,
        ignored=0.25,
        quantities=quantities,
    )


def _along(direction: str, name: str, generator: str, array: str, why: str, **given) -> Scenario:
    """A softmax-family row differentiated along a drawn ``direction`` (cotangent or tangent)."""
    quantities = GRAD if direction == "cotangent" else JVP
    options = {direction: array}
    return Scenario(
        name, generator, why, ops=SOFTMAX_FAMILY, options=options, quantities=quantities, **given
    )


COTANGENT_ZERO_WHY = (
    "all -inf rows under a zero cotangent contribute 0, not NaN (pytorch#31829, jax#6811)"
)
COTANGENTS = (
    _along(
        "cotangent",
        "cotangent-normal",
        "normal",
        "@normal",
        "a random cotangent: softmax and log_softmax get gradients too",
    ),
    _along(
        "cotangent",
        "cotangent-zero-on-masked-rows",
        "all_masked",
        "@zero-on-masked-rows",
        COTANGENT_ZERO_WHY,
    ),
    _along(
        "cotangent",
        "cotangent-extreme",
        "normal",
        "@extreme",
        "cotangents of 2^-12 and 2^12 side by side",
    ),
    _through_mean_ignore(
        "cotangent-mean-ignore",
        {"cotangent": "@normal"},
        GRAD,
        "a scalar cotangent through a mean with ignored rows",
    ),
)
TANGENTS = (
    _along("tangent", "tangent-normal", "normal", "@normal", "forward mode along a random tangent"),
    _along(
        "tangent",
        "tangent-masked",
        "masked",
        "@normal",
        "forward mode through -inf classes with label 0: finite (optax PR #1762)",
        params={"count": 2},
        labels="unmasked",
    ),
    _through_mean_ignore(
        "tangent-mean-ignore-smoothing",
        {"label_smoothing": 0.1, "tangent": "@normal"},
        JVP,
        "forward mode through the LLM configuration",
    ),
)
OPTION_CASES: tuple[Scenario, ...] = (
    *REDUCTIONS,
    *IGNORED,
    LLM,
    *SMOOTHING,
    *WEIGHTS,
    *CLASS_AXIS,
    *COTANGENTS,
    *TANGENTS,
)
