"""The accuracy case catalog: ids, deterministic inputs per dtype, coverage, reference validity."""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest

from xentbench import reference
from xentbench.adapters.base import DTYPES, OPS, numpy_dtype
from xentbench.reference.evaluate import output_shape
from xentbench.suites.catalog import generators as case_inputs
from xentbench.suites.catalog.cases import Case, catalog, find

CATALOG = catalog()
# Cases without call options; the options family (its own checks below) draws other shapes,
# ignored labels (-100) and directions, and is judged with its options.
PLAIN = tuple(case for case in CATALOG if not case.options)
SOFTMAX_FAMILY = {
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
}
# Which ops each family must cover (from the catalog's specification, not from the code).
FAMILY_OPS = {
    "benign": SOFTMAX_FAMILY,
    "extreme": SOFTMAX_FAMILY,
    "special": SOFTMAX_FAMILY,
    "soft_labels": {"softmax_cross_entropy", "sparse_softmax_cross_entropy"},
    "size": set(OPS) - {"linear_cross_entropy"},
    "sigmoid": {"sigmoid_cross_entropy"},
    "options": SOFTMAX_FAMILY,
    "linear": {"linear_cross_entropy"},
}
# Scenarios the specification names, per family, each for every op the family covers.
REQUIRED = {
    "extreme": (
        "magnitude-1e2",
        "magnitude-1e4",
        "magnitude-1e30",
        "near-max",
        "spread-1e4",
        "all-equal",
        "adjacent-floats",
        "dominant",
        "subnormal",
        "negative-only",
    ),
    "special": ("masked", "all-masked-rows", "plus-inf", "two-plus-inf", "nan"),
    # the failures reported against fused linear cross-entropy kernels
    "linear": (
        "confident",
        "offset-1000",
        "hundreds-128k",
        "padding-75pct",
        "chunk-boundaries",
        "hidden-4096",
    ),
    "size": (
        "classes-1",
        "classes-2",
        "classes-1000",
        "classes-32000",
        "classes-128000",
        "classes-256000",
        "batch-1",
        "batch-256",
    ),
}
BIG_ELEMENTS = 100_000  # cases above this many logits are left to the slow test
# Option cases above this many logits take the reference seconds per dtype: the fast tier checks
# them in float32 (REPRESENTATIVE_DTYPE, or their first dtype), the slow tier in every dtype.
LARGE_OPTION_ELEMENTS = 5_000
REPRESENTATIVE_DTYPE = "float32"


# Linear cases above this many multiply-adds (batch x classes x hidden) likewise: float32 only in
# the fast tier, every dtype in the slow one.
LARGE_LINEAR_PRODUCTS = 1_000_000


def _case_dtypes(selected, representative_above: int | None = None) -> list:
    params = []
    for case in selected:
        elements = case.batch * case.classes
        kept = REPRESENTATIVE_DTYPE if REPRESENTATIVE_DTYPE in case.dtypes else case.dtypes[0]
        large = representative_above is not None and elements > representative_above
        linear = case.op == "linear_cross_entropy"
        large = large or (linear and elements * case.hidden > LARGE_LINEAR_PRODUCTS)
        for dtype in case.dtypes:
            slow = elements > BIG_ELEMENTS or (large and dtype != kept)
            marks = [pytest.mark.slow] if slow else []
            params.append(pytest.param(case, dtype, id=f"{case.id}-{dtype}", marks=marks))
    return params


def _bits(array: np.ndarray | None) -> tuple | None:
    return None if array is None else (array.dtype.str, array.shape, array.tobytes())


def _quantities(op: str, case: Case | None = None) -> tuple[str, ...]:
    if op == "linear_cross_entropy":
        quantities = ("value", "grad_hidden", "grad_weight", "grad_bias")
        return quantities if case is not None and case.bias else quantities[:3]
    return ("value", "grad") if op in reference.GRADIENT_OPS else ("value",)


def _finfo(dtype: str):
    return ml_dtypes.finfo(numpy_dtype(dtype))


def test_case_ids_are_unique_and_name_op_family_and_name():
    ids = [case.id for case in CATALOG]
    assert len(ids) == len(set(ids))
    for case in CATALOG:
        assert case.id == f"{case.op}/{case.family}/{case.name}"
        assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", case.name), case.name
        assert case.why, f"{case.id} says nothing about why it matters"


def test_catalog_stays_small_enough_for_a_few_minutes_run():
    assert (
        100 <= len(PLAIN) <= 210
    )  # 201 cases: about 7 minutes of accuracy, two backends at a time
    assert (
        len(CATALOG) - len(PLAIN) <= 88
    )  # options, head, shards and linear (the cap alone on the linear op included): small batches


@pytest.mark.parametrize("family", sorted(FAMILY_OPS))
def test_each_family_covers_exactly_its_ops(family):
    assert {case.op for case in CATALOG if case.family == family} == FAMILY_OPS[family]


@pytest.mark.parametrize("family", sorted(REQUIRED))
def test_required_scenarios_exist_for_every_op_of_their_family(family):
    ids = {case.id for case in CATALOG}
    missing = [
        f"{op}/{family}/{name}"
        for name in REQUIRED[family]
        for op in sorted(FAMILY_OPS[family])
        if f"{op}/{family}/{name}" not in ids
    ]
    assert not missing


def test_find_returns_the_case_and_explains_a_miss():
    assert find("softmax/extreme/magnitude-1e30").dtypes == ("bfloat16", "float32", "float64")
    with pytest.raises(KeyError, match="softmax/extreme/magnitude-1e30"):
        find("softmax/extreme/no-such-case")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"generator": "gaussian"}, "unknown generator"),
        ({"op": "sparse_softmax_cross_entropy", "labels": "spiky"}, "unknown .* labels"),
        ({"invalid": True}, "only sparse labels"),
        ({"dtypes": ("float8",)}, "dtypes"),
        ({"family": "odd"}, "unknown family"),
    ],
)
def test_case_rejects_inconsistent_fields(fields, message):
    base = {"op": "softmax_cross_entropy", "family": "benign", "name": "x", "generator": "normal"}
    with pytest.raises(ValueError, match=message):
        Case(**{**base, **fields})


def test_inputs_refuse_an_undeclared_dtype():
    with pytest.raises(ValueError, match="not defined for float16"):
        find("softmax/extreme/magnitude-1e30").inputs("float16", seed=0)


@pytest.mark.parametrize("case", CATALOG, ids=lambda case: case.id)
def test_inputs_are_deterministic_and_change_with_the_seed(case):
    for dtype in case.dtypes:
        first, again, other = (case.inputs(dtype, seed) for seed in (0, 0, 1))
        assert [_bits(a) for a in first] == [_bits(a) for a in again]
        if case.generator != "saved":  # a promoted hunted input is the same for every seed
            assert [_bits(a) for a in first] != [_bits(a) for a in other]


@pytest.mark.parametrize("case", PLAIN, ids=lambda case: case.id)
def test_inputs_have_the_dtype_and_shape_and_are_exact_in_the_dtype(case):
    for dtype in case.dtypes:
        logits, labels = case.inputs(dtype, seed=3)
        target = numpy_dtype(dtype)
        width = case.hidden if case.op == "linear_cross_entropy" else case.classes
        assert logits.dtype == target and logits.shape == (case.batch, width)
        assert _bits(logits.astype(np.float64).astype(target)) == _bits(logits)
        if case.op == "linear_cross_entropy":
            weight = case.call_options(dtype, 3, "value")["weight"]
            assert labels.dtype == np.int64 and labels.shape == (case.batch,)
            assert weight.dtype == target and weight.shape == (case.classes, case.hidden)
        elif case.op in ("softmax", "log_softmax", "logsumexp"):
            assert labels is None
        elif case.op == "sparse_softmax_cross_entropy":
            assert labels.dtype == np.int64 and labels.shape == (case.batch,)
        else:
            assert labels.dtype == target and labels.shape == logits.shape
            assert _bits(labels.astype(np.float64).astype(target)) == _bits(labels)


@pytest.mark.parametrize("case", CATALOG, ids=lambda case: case.id)
def test_only_special_generators_make_nonfinite_inputs(case):
    for dtype in case.dtypes:
        logits, labels = case.inputs(dtype, seed=0)
        x = logits.astype(np.float64)
        assert np.isfinite(x).all() != (case.generator in case_inputs.NONFINITE_GENERATORS), dtype
        if labels is not None:
            assert np.isfinite(labels.astype(np.float64)).all(), dtype


DTYPE_INDEPENDENT = [
    case
    for case in CATALOG
    if case.dtypes == DTYPES and case.generator not in {"near_max", "adjacent", "subnormal"}
]


@pytest.mark.parametrize("case", DTYPE_INDEPENDENT, ids=lambda case: case.id)
def test_a_case_is_the_same_draw_in_every_dtype_up_to_rounding(case):
    wide_logits, wide_labels = case.inputs("float64", seed=5)
    for dtype in ("float16", "bfloat16", "float32"):
        logits, labels = case.inputs(dtype, seed=5)
        assert _bits(logits) == _bits(wide_logits.astype(logits.dtype))
        if labels is not None:
            assert _bits(labels) == _bits(wide_labels.astype(labels.dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_near_max_cases_are_finite_and_near_the_dtype_max(dtype):
    near = [case for case in CATALOG if case.generator == "near_max"]
    assert near
    for case in near:
        x = case.inputs(dtype, seed=0)[0].astype(np.float64)
        assert np.isfinite(x).all()
        assert 0.75 * float(_finfo(dtype).max) <= np.abs(x).min()


def test_dtype_relative_generators_scale_with_the_dtype():
    for dtype in DTYPES:
        limits = _finfo(dtype)
        subnormal = find("softmax/extreme/subnormal").inputs(dtype, 0)[0].astype(np.float64)
        assert np.abs(subnormal).max() <= 3 * float(limits.smallest_subnormal)
        assert np.count_nonzero(subnormal) > 0
        adjacent = find("softmax/extreme/adjacent-floats").inputs(dtype, 0)[0].astype(np.float64)
        steps = np.unique(np.round((adjacent - 1.0) / float(limits.eps), 6))
        assert set(steps.tolist()) <= {0.0, 1.0, 2.0, 3.0} and len(steps) > 1


def _labels(case_id: str, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    logits, labels = find(case_id).inputs(dtype, seed=0)
    return logits.astype(np.float64), labels


def test_sparse_labels_fall_where_the_case_says():
    sparse = "sparse_softmax_cross_entropy"
    logits, labels = _labels(f"{sparse}/extreme/dominant")
    assert (labels == logits.argmax(axis=1)).all()
    logits, labels = _labels(f"{sparse}/extreme/dominant-label-elsewhere")
    assert (labels != logits.argmax(axis=1)).all()
    logits, labels = _labels(f"{sparse}/special/masked")
    assert np.isfinite(logits[np.arange(len(labels)), labels]).all()
    logits, labels = _labels(f"{sparse}/special/masked-label-on-masked")
    assert (logits[np.arange(len(labels)), labels] == -np.inf).all()
    assert (_labels(f"{sparse}/soft_labels/label-first")[1] == 0).all()
    assert (_labels(f"{sparse}/soft_labels/label-last")[1] == 15).all()


@pytest.mark.parametrize(
    ("name", "row_sum"), [("one-hot", 1.0), ("smoothed-0.1", 1.0), ("sum-0.5", 0.5), ("sum-2", 2.0)]
)
def test_soft_labels_sum_to_what_the_case_says(name, row_sum):
    labels = _labels(f"softmax_cross_entropy/soft_labels/{name}")[1]
    np.testing.assert_allclose(labels.sum(axis=1), row_sum, rtol=1e-12)


def test_soft_labels_special_shapes():
    soft = "softmax_cross_entropy"
    assert set(np.unique(_labels(f"{soft}/soft_labels/one-hot")[1]).tolist()) == {0.0, 1.0}
    assert _labels(f"{soft}/soft_labels/smoothed-0.1")[1].min() == pytest.approx(0.1 / 16)
    assert (_labels(f"{soft}/soft_labels/zero-classes")[1] == 0).sum(axis=1).min() >= 8
    logits, labels = _labels(f"{soft}/special/masked")
    assert (labels[logits == -np.inf] == 0).all()
    logits, labels = _labels(f"{soft}/special/masked-label-on-masked")
    assert (labels[logits == -np.inf] > 0).all()


def test_sparse_labels_are_in_range_exactly_when_the_case_is_valid():
    for case in PLAIN:
        if case.op == "sparse_softmax_cross_entropy":
            labels = case.inputs(case.dtypes[0], seed=0)[1]
            in_range = ((labels >= 0) & (labels < case.classes)).all()
            assert in_range != case.invalid, case.id


VALID = [case for case in PLAIN if not case.invalid]


@pytest.mark.parametrize(("case", "dtype"), _case_dtypes(VALID))
def test_reference_accepts_every_valid_case(case, dtype):
    logits, labels = case.inputs(dtype, seed=0)
    for quantity in _quantities(case.op, case):
        options = case.call_options(dtype, 0, quantity)
        result = reference.exact(case.op, logits, labels, quantity, **options)
        assert result.hi.shape == output_shape(case.op, quantity, logits.shape, options)


@pytest.mark.parametrize(("case", "dtype"), _case_dtypes(c for c in CATALOG if c.invalid))
def test_reference_rejects_every_invalid_case(case, dtype):
    logits, labels = case.inputs(dtype, seed=0)
    for quantity in _quantities(case.op):
        with pytest.raises(ValueError, match="outside"):
            reference.exact(case.op, logits, labels, quantity)


OPTION_CASES = [case for case in CATALOG if case.options]


@pytest.mark.parametrize(("case", "dtype"), _case_dtypes(OPTION_CASES, LARGE_OPTION_ELEMENTS))
def test_reference_accepts_every_option_case_with_its_options(case, dtype):
    logits, labels = case.inputs(dtype, seed=0)
    for quantity in case.evaluated_quantities:
        options = case.call_options(dtype, 0, quantity)
        for value in options.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == numpy_dtype(dtype)
        result = reference.exact(case.op, logits, labels, quantity, **options)
        assert result.hi.dtype == np.float64


def test_option_cases_draw_what_they_say():
    by_id = {case.id: case for case in OPTION_CASES}
    sparse = "sparse_softmax_cross_entropy/options"
    labels = by_id[f"{sparse}/ignore-90pct"].inputs("float32", 0)[1]
    assert np.mean(labels == -100) == pytest.approx(0.9, abs=0.02)
    assert (by_id[f"{sparse}/all-ignored"].inputs("float32", 0)[1] == -100).all()
    logits, labels = by_id[f"{sparse}/class-axis-1-smoothing"].inputs("float32", 0)
    assert logits.shape == (4, 16, 3) and labels.shape == (4, 3)
    masked = by_id["logsumexp/options/cotangent-zero-on-masked-rows"]
    logits, _ = masked.inputs("float32", 0)
    cotangent = masked.call_options("float32", 0, "grad")["cotangent"]
    assert (cotangent[np.isneginf(logits).all(axis=1)] == 0).all()
    assert masked.call_options("float32", 0, "value") == {}
