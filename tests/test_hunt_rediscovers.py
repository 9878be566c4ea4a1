"""The hunt's acceptance test, load-independent: from scratch (no catalog rows), the hunt
rediscovers the known failures of real implementations within a fixed number of candidates
(``max_evals`` ends the search, so the result is the same on a loaded machine). The default
2 s budget searches several times these counts (docs/hunting.md, the from-scratch table)."""

from __future__ import annotations

import numpy as np
import pytest

from xentbench.adapters import registry
from xentbench.adapters.base import Call
from xentbench.suites.hunt.search import HuntSpec, hunt


def _hunt(backend: str, name: str, dtype: str, quantity: str, candidates: int):
    adapter = registry.load(backend)
    call = Call(adapter.implementation(name), dtype, quantity=quantity)
    spec = HuntSpec(budget_s=600.0, max_evals=candidates, from_scratch=True)
    return hunt(adapter, call, spec, seed=0)


def test_overflow_of_the_naive_softmax():
    found = _hunt("numpy", "numpy:naive.softmax", "float32", "value", 64)
    overflowed = [s for s in found.broken.values() if np.max(s.candidate.logits) > 88.72]
    assert overflowed, found.broken  # exp overflows float32 past log(max) = 88.7228


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_logsumexp_backward_on_large_or_negative_only_rows(dtype):
    pytest.importorskip("torch")
    found = _hunt("torch", "torch:torch.logsumexp", dtype, "grad", 32)
    assert found.worst is not None and found.worst.verdict == "inaccurate", found.worst
    assert found.worst.ratio > 10  # far beyond the allowance (1), not a rounding slip
    finite = found.worst.candidate.logits[np.isfinite(found.worst.candidate.logits)]
    assert np.abs(finite).min() > 100 or (finite < 0).all(), finite


@pytest.mark.slow  # 400 candidates of TensorFlow eager: ~20 s idle, a minute under load
def test_tensorflow_nan_of_a_zero_label_on_a_minus_inf_logit():
    pytest.importorskip("tensorflow")
    name = "tensorflow:tf.nn.softmax_cross_entropy_with_logits"
    found = _hunt("tensorflow", name, "float32", "value", 400)
    score = found.broken.get("finite->nan masked")
    assert score is not None, sorted(found.broken)
    masked = np.isneginf(score.candidate.logits)
    assert masked.any() and (score.candidate.label[masked] == 0).all()


def test_optax_integer_label_loss_at_large_magnitudes():
    pytest.importorskip("optax")
    name = "jax:optax.softmax_cross_entropy_with_integer_labels"
    found = _hunt("jax", name, "float32", "value", 128)
    assert found.worst is not None and found.worst.verdict == "inaccurate", found.worst
    # logsumexp rounded at the row's magnitude before x[label] is subtracted: a row far from 0
    assert np.abs(found.worst.candidate.logits).min() > 100, found.worst.candidate.logits
