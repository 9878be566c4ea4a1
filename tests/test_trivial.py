"""The trivial-output guard (``suites.judge.trivial``): no output that computes nothing passes the
default catalog, and the cases where one does pass are listed here with the reason."""

from __future__ import annotations

import fnmatch

import numpy as np
import pytest

from xentbench.reference import exact as reference_exact
from xentbench.reference.dtypes import DTYPES
from xentbench.suites.accuracy.suite import case_exact, case_inputs, case_options
from xentbench.suites.catalog import cases
from xentbench.suites.catalog.case import LOGITS_OPS
from xentbench.suites.judge.trivial import TRIVIAL_OUTPUTS, trivial_outputs, trivial_passes

SEED = 0

# Where a trivial output passes a default case (no options), with why: (family/name glob,
# trivial outputs) -> reason. Some are right by nature, some within the budget by the inputs'
# nature; none is hidden: the slow test below fails on a pass missing here.
TRIVIAL_PASSES: dict[tuple[str, tuple[str, ...]], str] = {
    ("extreme/all-equal", ("constant", "uniform", "subsample")): (
        "equal logits: the softmax is exactly uniform and every row alike"
    ),
    ("extreme/adjacent-floats", ("constant", "uniform", "subsample")): (
        "logits one ULP apart: uniform to within the dtype's resolution"
    ),
    ("extreme/subnormal", ("constant", "uniform", "subsample")): (
        "subnormal and zero logits: uniform to within the dtype's resolution"
    ),
    ("size/classes-1", TRIVIAL_OUTPUTS): (
        "one class: softmax 1, log_softmax and the losses 0, gradients 0, whatever the logits"
    ),
    ("sigmoid/zeros", ("constant", "uniform", "subsample")): (
        "zero logits: the sigmoid loss is log 2 everywhere, its gradient 1/2 - z"
    ),
    ("extreme/dominant", ("zeros", "constant")): (
        "sure and right: the loss C·e^-50 and its gradient lie within the allowance of 0"
    ),
    ("extreme/spread-1e4", ("constant",)): (
        "every row's logsumexp is its maximum, near 1e4 in each row: the rows agree to the ULP"
    ),
    ("size/classes-*", ("constant", "subsample")): (
        "32000+ normal classes: logsumexp is about log C + 4.5 in every row, and half of the "
        "classes estimate the sum, both within the long reduction's budget"
    ),
    ("extreme/*", ("subsample",)): (
        "logits of huge magnitude: where each row's maximum lies on a kept (even) class, the "
        "dropped terms and log 2 vanish below the output's ULP"
    ),
    ("*masked*", ("subsample",)): (
        "a label on a masked class: the loss is +inf, which the subsample reproduces"
    ),
    ("special/two-plus-inf", ("subsample",)): (
        "two +inf logits: the NaN split and logsumexp +inf are limits the subsample keeps"
    ),
}


def _listed(case_id: str, trivial: str) -> bool:
    name = case_id.split("/", 1)[1]
    return any(
        fnmatch.fnmatchcase(name, pattern) and trivial in names for pattern, names in TRIVIAL_PASSES
    )


def _default_cases(op: str, dtype: str) -> list[cases.Case]:
    """The cases ``verify`` runs for ``op`` by default (no keyword options declared)."""
    return [c for c in cases.catalog() if c.op == op and not c.options and dtype in c.dtypes]


def test_uniform_is_the_softmax_of_equal_logits():
    logits = np.zeros((3, 4), dtype=np.float32)
    exact = reference_exact("softmax", logits, None, "value")
    outputs = trivial_outputs("softmax", "value", "float32", logits, None, exact, plain=True)
    assert np.array_equal(outputs["uniform"], np.full((3, 4), np.float32(0.25)))
    assert trivial_passes("softmax", "value", "float32", logits, None, exact) == (
        "constant",
        "uniform",
        "subsample",
    )


@pytest.mark.parametrize("op", LOGITS_OPS)
def test_no_trivial_output_passes_typical_logits(op):
    case_id = f"{op}/{'sigmoid/normal' if op == 'sigmoid_cross_entropy' else 'benign/normal-4x16'}"
    logits, labels = case_inputs(case_id, "float32", SEED)
    for quantity in cases.find(case_id).evaluated_quantities:
        exact = case_exact(case_id, "float32", SEED, quantity)
        assert trivial_passes(op, quantity, "float32", logits, labels, exact) == ()


def test_with_options_only_zeros_and_the_constant_are_defined():
    case = next(c for c in cases.catalog() if c.op == "softmax_cross_entropy" and c.options)
    logits, labels = case_inputs(case.id, "float32", SEED)
    exact = case_exact(case.id, "float32", SEED, "value")
    outputs = trivial_outputs(case.op, "value", "float32", logits, labels, exact, plain=False)
    assert set(outputs) <= {"zeros", "constant"}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", LOGITS_OPS)
def test_every_trivial_output_fails_the_default_catalog(op, dtype):
    passed: dict[tuple[str, str], list[str]] = {}
    evaluated: dict[str, int] = {}
    for case in _default_cases(op, dtype):
        logits, labels = case_inputs(case.id, dtype, SEED)
        for quantity in case.evaluated_quantities:
            exact = case_exact(case.id, dtype, SEED, quantity)
            if isinstance(exact, ValueError):  # invalid input: no number passes
                continue
            evaluated[quantity] = evaluated.get(quantity, 0) + 1
            for name in trivial_passes(op, quantity, dtype, logits, labels, exact):
                passed.setdefault((quantity, name), []).append(case.id)
                assert _listed(case.id, name), f"{name} passes {case.id} {dtype} {quantity}"
    for quantity, count in evaluated.items():
        for name in TRIVIAL_OUTPUTS:
            assert len(passed.get((quantity, name), [])) < count, (
                f"a {name} output passes every default {op} {dtype} {quantity} case"
            )


# Where zeros or a constant pass a case of the options family ((case name, quantity) -> why).
# The softmax gradients and the saturated head cases are weak cases of the catalog: listed here
# so that they stay visible, not hidden.
_SOFTMAX_VJP = (
    "softmax's vector-Jacobian product with the unit cotangent is exactly 0 "
    "(p_i (1 - sum p) = 0): a softmax gradient case without a drawn cotangent cannot fail zeros"
)
OPTION_PASSES: dict[tuple[str, str], str] = {
    ("options/all-ignored", "grad"): "every row ignored: the gradient is exactly 0 everywhere",
    ("options/softcap-30-wide", "grad"): (
        "logits of magnitude 34 to 1e4 past the cap 30: sech^2 flattens the gradient to ~1e-14 "
        "(softmax's: " + _SOFTMAX_VJP + "), within the allowance of 0 below float64"
    ),
    ("options/softcap-30-wide", "value"): (
        "most lanes saturate near the cap 30: the rows' logsumexp agree to bfloat16's ULP"
    ),
    ("options/softcap-50-wide", "grad"): _SOFTMAX_VJP,
    ("options/temperature-half", "grad"): _SOFTMAX_VJP,
    ("options/temperature-two", "grad"): _SOFTMAX_VJP,
    ("options/head-offset-cap-z-loss", "grad"): (
        "1e4 / 0.5 saturates every lane at the cap 30: the softmax is uniform and the gradient "
        "through sech^2(667) vanishes"
    ),
    ("options/head-offset-cap-z-loss", "value"): (
        "every lane saturated at the cap: every row's loss is log C + z (30 + log C)^2 alike"
    ),
    ("options/shards-3-offset-cap-z-loss", "grad"): (
        "the sharded full head: 1e4 / 0.5 saturates every lane at the cap 30, as above"
    ),
    ("options/shards-3-offset-cap-z-loss", "value"): (
        "every lane saturated at the cap: every row's loss is the same number, as above"
    ),
    ("options/softcap-padded-saturated", "value"): (
        "every lane near -30 after the cap: the rows' losses agree to bfloat16's ULP"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("op", LOGITS_OPS)
def test_zeros_and_the_constant_fail_every_options_case_but_the_listed(op):
    unlisted = []
    for case in (c for c in cases.catalog() if c.op == op and c.options):
        for dtype in case.dtypes:
            logits, labels = case_inputs(case.id, dtype, SEED)
            for quantity in case.evaluated_quantities:
                exact = case_exact(case.id, dtype, SEED, quantity)
                if isinstance(exact, ValueError):
                    continue
                options = case_options(case.id, dtype, SEED, quantity)
                passing = trivial_passes(op, quantity, dtype, logits, labels, exact, options)
                if passing and (case.id.split("/", 1)[1], quantity) not in OPTION_PASSES:
                    unlisted.append(f"{passing} pass {case.id} {dtype} {quantity}")
    assert not unlisted


def test_the_report_reads_back_the_values_a_run_gave_beneath_a_cases_options():
    from xentbench.suites.report.trivial import given_values

    assert given_values("", {}) == ()
    assert given_values("label_smoothing=0.25,temperature=2.0,z_loss=0.0001", {}) == (
        ("label_smoothing", 0.25),
        ("temperature", 2.0),
        ("z_loss", 0.0001),
    )
    own = {"label_smoothing": 0.1}
    assert given_values("reduction=mean,label_smoothing=0.1", own) == (("reduction", "mean"),)
    assert given_values("ignore_index=-100", {}) == (("ignore_index", -100),)
    # arrays are not read back from their hash: such a row has no margins
    assert given_values("class_weight=float32[16]#1a2b3c", {}) is None
    assert given_values("label_smoothing=abc", {}) is None
