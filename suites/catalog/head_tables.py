"""The LLM head's table: soft-capping, temperature and z-loss as LLM trainers call the loss.

Gemma 2 caps the final logits at 30 (``final_logit_softcapping``; 50 for attention), PaLM adds
``1e-4 * logsumexp^2``, and vocabularies are padded with -inf lanes (50257 -> 50304); each row
names the failure it aims at; the shard cases split the vocabulary as Megatron's tensor-parallel
ranks do (reference.shards). Batches stay small: the reference evaluates every element in
ball arithmetic.
"""

from __future__ import annotations

import dataclasses

from xentbench.suites.catalog.case import LABELLED_SOFTMAX, SOFTMAX_FAMILY, SPARSE, Scenario

VALUE_GRAD = ("value", "grad")
VJP_ONLY = ("softmax", "log_softmax")  # their grad is a vector-Jacobian product


def _along_a_cotangent(scenario: Scenario) -> tuple[Scenario, ...]:
    """The scenario with softmax and log_softmax differentiated along a drawn cotangent (under
    ones, softmax's is exactly 0, so a backward missing 1/T or sech^2 would pass), the other
    ops as they are; the case ids stay the same."""
    vjp = tuple(op for op in scenario.ops if op in VJP_ONLY)
    rest = tuple(op for op in scenario.ops if op not in VJP_ONLY)
    along = {**scenario.options, "cotangent": "@normal"}
    return (
        dataclasses.replace(scenario, ops=rest),
        dataclasses.replace(scenario, ops=vjp, options=along),
    )


CAPS = tuple(
    Scenario(
        f"softcap-{cap}-wide",
        "uniform",
        f"cap {cap} on logits up to ±1e4: tanh saturates, the slope sech^2 is tiny (Gemma 2)",
        {"scale": 1e4},
        ops=SOFTMAX_FAMILY,
        options={"softcap": float(cap)},
        quantities=VALUE_GRAD,
    )
    for cap in (30, 50)
)
PADDED = Scenario(
    "softcap-padded-vocabulary",
    "padded_vocabulary",
    "50257 classes padded to 50304 with -inf lanes, cap 30: a capped -inf lane is -30 and "
    "keeps probability exp(-30 - lse) (the formula), too little to show at these magnitudes",
    {"padding": 47},
    ops=SPARSE,
    batch=1,
    classes=50304,
    dtypes=("float32", "bfloat16"),  # what LLMs train in; each row costs seconds exactly
    labels="unmasked",
    options={"softcap": 30.0},
    quantities=VALUE_GRAD,
)
PADDED_SATURATED = Scenario(
    "softcap-padded-saturated",
    "padded_vocabulary",
    "16 -inf padding lanes beside 48 logits near -100, cap 30: every lane sits near -30, so "
    "the capped padding lanes carry a quarter of the mass (a kernel that excludes them differs)",
    {"padding": 16, "shift": -100.0},
    ops=SPARSE,
    batch=4,
    classes=64,
    labels="unmasked",
    options={"softcap": 30.0},
    quantities=VALUE_GRAD,
)
TEMPERATURES = (
    *(
        Scenario(
            f"temperature-{name}",
            "normal",
            f"temperature {t}: logits / T, the gradient scaled by 1/T",
            {"scale": 3.0},
            ops=SOFTMAX_FAMILY,
            options={"temperature": t},
            quantities=VALUE_GRAD,
        )
        for name, t in (("half", 0.5), ("two", 2.0))
    ),
    Scenario(
        "temperature-per-row",
        "normal",
        "one temperature per row in [0.5, 2] (per-sequence sampling temperatures)",
        {"scale": 3.0},
        ops=LABELLED_SOFTMAX,
        options={"temperature": "@temperatures"},
        quantities=VALUE_GRAD,
    ),
)
Z_LOSS = (
    Scenario(
        "z-loss-confident",
        "dominant",
        "z-loss 1e-4 on confident rows (the label raised by 20, above the max): the gradient "
        "2 z lse p dominates p - onehot (PaLM; Liger-Kernel, gpt-neox)",
        {"gap": 20.0},
        labels="argmax",
        ops=LABELLED_SOFTMAX,
        options={"z_loss": 1e-4},
        quantities=VALUE_GRAD,
    ),
    Scenario(
        "head-offset-cap-z-loss",
        "uniform",
        "1e4 + noise, temperature 0.5, cap 30 and z-loss 1e-4 together (the full head)",
        {"scale": 3.0, "shift": 1e4},
        ops=SPARSE,
        options={"temperature": 0.5, "softcap": 30.0, "z_loss": 1e-4},
        quantities=VALUE_GRAD,
    ),
)
HEAD_CASES: tuple[Scenario, ...] = tuple(
    split
    for scenario in (*CAPS, PADDED, PADDED_SATURATED, *TEMPERATURES, *Z_LOSS)
    for split in (
        _along_a_cotangent(scenario) if set(VJP_ONLY) & set(scenario.ops) else (scenario,)
    )
)

# Vocabulary-parallel cross-entropy (reference.shards): k shards over a vocabulary k does not
# divide (Megatron-LM #1754), labels on the first and last class of every shard (an offset off
# by one reads a neighbour's logit), with and without label smoothing (Megatron-LM #7452: the
# smoothing spread over the local vocabulary; a loss off by log(k)). Judged against the
# unsharded loss, which is the same number.
SHARDED: tuple[Scenario, ...] = tuple(
    Scenario(
        f"shards-{k}{suffix}",
        "normal",
        f"{k} shards over {classes} classes (uneven), labels on every shard's first and last "
        f"class{why}",
        {"scale": 3.0},
        ops=SPARSE,
        batch=2 * k,
        classes=classes,
        labels=f"shard-boundaries-{k}",
        options={"shards": k, **extra},
        quantities=VALUE_GRAD,
    )
    for k, classes, suffix, extra, why in (
        (2, 51, "-boundaries", {}, ""),
        (3, 50, "-smoothing", {"label_smoothing": 0.1}, ", label smoothing 0.1 over all shards"),
        (8, 100, "-smoothing", {"label_smoothing": 0.1}, ", label smoothing 0.1 over all shards"),
    )
)
SHARDED_HEAD = Scenario(
    "shards-3-offset-cap-z-loss",
    "uniform",
    "3 shards, 1e4 + noise, temperature 0.5, cap 30, z-loss 1e-4 and smoothing 0.1: the "
    "head's options on the all-reduced max and logsumexp",
    {"scale": 3.0, "shift": 1e4},
    ops=SPARSE,
    batch=6,
    classes=50,
    labels="shard-boundaries-3",
    dtypes=("float32", "float64"),  # 16-bit dtypes round 1e4 + noise to one value
    options={
        "shards": 3,
        "label_smoothing": 0.1,
        "temperature": 0.5,
        "softcap": 30.0,
        "z_loss": 1e-4,
    },
    quantities=VALUE_GRAD,
)
SHARD_CASES: tuple[Scenario, ...] = (*SHARDED, SHARDED_HEAD)
