"""The on-disk reference cache: computed once, keyed by every input that matters, self-healing."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from xentbench import reference
from xentbench.reference import cache, evaluate

LOGITS = np.array([[0.5, -1.0, 2.0], [3.0, 3.0, -np.inf]], dtype=np.float32)
SPARSE = np.array([2, 0])
SOFT = np.array([[0.25, 0.25, 0.5], [1.0, 0.0, 0.0]], dtype=np.float32)


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    """Every call the cache makes to the reference evaluator, recorded as (op, quantity)."""
    recorded = []
    real = evaluate.exact

    def counting(op, logits, labels=None, quantity="value"):
        recorded.append((op, quantity))
        return real(op, logits, labels, quantity)

    monkeypatch.setattr(evaluate, "exact", counting)
    return recorded


def _npz_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.npz"))


def test_second_call_reads_the_file_without_recomputing(tmp_path, calls):
    first = cache.cached_exact("softmax", LOGITS, None, "value", cache_dir=tmp_path)
    second = cache.cached_exact("softmax", LOGITS, None, "value", cache_dir=tmp_path)
    assert calls == [("softmax", "value")]
    assert len(_npz_files(tmp_path)) == 1
    expected = reference.exact("softmax", LOGITS)
    for got in (first, second):
        np.testing.assert_array_equal(got.hi, expected.hi)
        np.testing.assert_array_equal(got.lo, expected.lo)


def test_cached_result_keeps_shape_and_rounds_like_the_reference(tmp_path):
    cache.cached_exact("sparse_softmax_cross_entropy", LOGITS, SPARSE, "value", cache_dir=tmp_path)
    got = cache.cached_exact(
        "sparse_softmax_cross_entropy", LOGITS, SPARSE, "value", cache_dir=tmp_path
    )
    expected = reference.exact("sparse_softmax_cross_entropy", LOGITS, SPARSE)
    assert got.hi.shape == (2,)
    np.testing.assert_array_equal(got.rounded("bfloat16"), expected.rounded("bfloat16"))


def test_no_temporary_files_are_left_behind(tmp_path):
    cache.cached_exact("logsumexp", LOGITS, None, "grad", cache_dir=tmp_path)
    assert [path.suffix for path in tmp_path.iterdir()] == [".npz"]


VARIANTS = {
    "base": ("softmax_cross_entropy", LOGITS, SOFT, "value"),
    "other-op": ("sparse_softmax_cross_entropy", LOGITS, SPARSE, "value"),
    "other-quantity": ("softmax_cross_entropy", LOGITS, SOFT, "grad"),
    "other-logits": ("softmax_cross_entropy", LOGITS + np.float32(1), SOFT, "value"),
    "other-labels": ("softmax_cross_entropy", LOGITS, SOFT[::-1].copy(), "value"),
    "float64-logits": ("softmax_cross_entropy", LOGITS.astype(np.float64), SOFT, "value"),
    "float16-logits": ("softmax_cross_entropy", LOGITS.astype(np.float16), SOFT, "value"),
    "bfloat16-logits": ("softmax_cross_entropy", LOGITS.astype(ml_dtypes.bfloat16), SOFT, "value"),
    "float64-labels": ("softmax_cross_entropy", LOGITS, SOFT.astype(np.float64), "value"),
    "reshaped": ("softmax_cross_entropy", LOGITS.reshape(1, 2, 3), SOFT.reshape(1, 2, 3), "value"),
}


def test_every_input_that_matters_changes_the_key():
    keys = {name: cache.cache_key(*variant) for name, variant in VARIANTS.items()}
    assert len(set(keys.values())) == len(keys), keys


def test_key_is_stable_and_ignores_memory_layout():
    fortran = np.asfortranarray(LOGITS)
    assert cache.cache_key("softmax", fortran, None, "value") == cache.cache_key(
        "softmax", LOGITS.copy(), None, "value"
    )


def test_different_inputs_are_stored_separately(tmp_path, calls):
    for op, logits, labels, quantity in VARIANTS.values():
        cache.cached_exact(op, logits, labels, quantity, cache_dir=tmp_path)
    assert len(_npz_files(tmp_path)) == len(VARIANTS)
    assert len(calls) == len(VARIANTS)
    for op, logits, labels, quantity in VARIANTS.values():
        got = cache.cached_exact(op, logits, labels, quantity, cache_dir=tmp_path)
        np.testing.assert_array_equal(got.hi, reference.exact(op, logits, labels, quantity).hi)
    assert len(calls) == len(VARIANTS)


@pytest.mark.parametrize(
    "damage",
    [b"", b"not a zip file at all", b"PK\x03\x04truncated"],
    ids=["empty", "garbage", "truncated-zip"],
)
def test_corrupt_file_is_recomputed_and_rewritten(tmp_path, calls, damage):
    cache.cached_exact("log_softmax", LOGITS, None, "value", cache_dir=tmp_path)
    (path,) = _npz_files(tmp_path)
    path.write_bytes(damage)
    got = cache.cached_exact("log_softmax", LOGITS, None, "value", cache_dir=tmp_path)
    np.testing.assert_array_equal(got.hi, reference.exact("log_softmax", LOGITS).hi)
    assert len(calls) == 2
    cache.cached_exact("log_softmax", LOGITS, None, "value", cache_dir=tmp_path)
    assert len(calls) == 2, "the recomputed result was not written back"


def test_file_with_wrong_contents_is_recomputed(tmp_path, calls):
    cache.cached_exact("softmax", LOGITS, None, "value", cache_dir=tmp_path)
    (path,) = _npz_files(tmp_path)
    np.savez(path, hi=np.zeros(7), lo=np.zeros(7))  # readable, but not this result's shape
    got = cache.cached_exact("softmax", LOGITS, None, "value", cache_dir=tmp_path)
    assert got.hi.shape == LOGITS.shape
    assert len(calls) == 2


def test_invalid_input_raises_every_time_and_is_not_cached(tmp_path, calls):
    bad_labels = np.array([3, 0])
    for _ in range(2):
        with pytest.raises(ValueError, match="outside"):
            cache.cached_exact(
                "sparse_softmax_cross_entropy", LOGITS, bad_labels, "value", cache_dir=tmp_path
            )
    assert len(calls) == 2
    assert _npz_files(tmp_path) == []


def test_default_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "custom"))
    cache.cached_exact("logsumexp", LOGITS)
    assert len(_npz_files(tmp_path / "custom")) == 1
