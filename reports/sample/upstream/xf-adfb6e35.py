#!/usr/bin/env python3
"""xentbench finding xf-adfb6e35: torch:F.linear_cross_entropy(chunked,compact,16), value: nan-for-finite [defect?].

Class defect?: nothing in suites/findings/known.toml explains it.
Seen with: 2.13.0+cpu.
Input: case linear_cross_entropy/linear/nan-padding-row (float32, seed 0), shrunk by xentbench from 8x100x32
to 1x1x1 (rows x classes) while the failure mode persisted.

Needs only PyTorch and NumPy. Exits 1 while the problem is present, 0 once it is fixed.
"""

from __future__ import annotations

import base64
import sys

import numpy as np

FINDING = 'xf-adfb6e35'
IMPLEMENTATION = 'torch:F.linear_cross_entropy(chunked,compact,16)'
FAILURE_MODE = 'nan-for-finite'
DTYPE, DEVICE, MODE, QUANTITY = 'float32', 'cpu', 'eager', 'value'


def _floats(values, shape):
    return np.array([float.fromhex(v) for v in values], dtype=np.float64).reshape(shape)


def _packed(text, dtype, shape):
    """A large array, exactly: base64 of its raw little-endian bytes."""
    raw = np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype))
    return raw.reshape(shape).astype(np.float64 if raw.dtype.kind == "f" else np.int64)


# The input, exactly (float hex of the float32 values).
LOGITS = _floats(['nan'], (1, 1))
LABELS = np.array([-100], dtype=np.int64).reshape((1,))
# The call's options, as the adapter passes them (arrays exact in float32, held as float64).
OPTIONS = {
    'weight': _floats(['-0x1.94a5500000000p-3'], (1, 1)),
    'ignore_index': -100,
}
SHIFTED_LOGITS = None
# The exact result (xentbench's arbitrary-precision reference) as hi + lo, the exact value
# rounded to float32 (TRUTH), its ULP, and the error allowance of xentbench's budget (absolute).
EXPECTED_HI = _floats(['0x0.0p+0'], (1,))
EXPECTED_LO = _floats(['0x0.0p+0'], (1,))
TRUTH = _floats(['0x0.0p+0'], (1,))
ULP = _floats(['0x1.0000000000000p-149'], (1,))
ALLOWANCE = _floats(['0x1.0000000000000p-149'], (1,))
SUMS_TO_ONE_TOLERANCE = 9.5367431640625e-07

import math

import torch
import torch.nn.functional as F

_REDUCTION = {'none': 'none', 'sum': 'sum', 'mean': 'mean', 'sum_over_batch_size': 'mean'}


def _softmax(logits: torch.Tensor, labels: torch.Tensor | None, class_axis=-1) -> torch.Tensor:
    return torch.softmax(logits, dim=int(class_axis))


def _log_softmax(logits: torch.Tensor, labels: torch.Tensor | None, class_axis=-1) -> torch.Tensor:
    return torch.log_softmax(logits, dim=int(class_axis))


def _logsumexp(logits: torch.Tensor, labels: torch.Tensor | None, class_axis=-1) -> torch.Tensor:
    return torch.logsumexp(logits, dim=int(class_axis))


def _loss_arguments(options: dict) -> dict:
    arguments = {"reduction": _REDUCTION[options.get("reduction", "none")]}
    if "ignore_index" in options:
        arguments["ignore_index"] = int(options["ignore_index"])
    if "class_weight" in options:
        arguments["weight"] = options["class_weight"]
    return arguments


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor | None, **options) -> torch.Tensor:
    smoothing = float(options.pop("label_smoothing", 0.0))
    return F.cross_entropy(logits, labels, label_smoothing=smoothing, **_loss_arguments(options))


def _nll_loss(logits: torch.Tensor, labels: torch.Tensor | None, **options) -> torch.Tensor:
    return F.nll_loss(F.log_softmax(logits, dim=1), labels, **_loss_arguments(options))


def _binary_cross_entropy_with_logits(
    logits: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none")


def _linear_then_cross_entropy(x, w, b, y, ignore_index):
    return F.cross_entropy(F.linear(x, w, b), y, reduction="none", ignore_index=ignore_index)


def _fused(chunking: torch.nn.LinearCrossEntropyOptions | None) -> LinearFunction:
    def linear_cross_entropy(x, w, b, y, ignore_index):
        return F.linear_cross_entropy(
            x, w, y, linear_bias=b, reduction="none", ignore_index=ignore_index, options=chunking
        )

    return linear_cross_entropy


def _chunking(**settings) -> torch.nn.LinearCrossEntropyOptions | None:
    chunking_class = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    return None if chunking_class is None else chunking_class(**settings)


def softcapped(x: torch.Tensor, softcap=None, temperature=None) -> torch.Tensor:
    """cap * tanh((x / T) / cap) in x's dtype, as written in Gemma 2's modelling code."""
    z = x
    if temperature is not None:
        per_row = torch.is_tensor(temperature) and temperature.ndim > 0
        z = z / (temperature[..., None] if per_row else temperature)
    if softcap is not None and math.isfinite(float(softcap)):
        z = softcap * torch.tanh(z / softcap)
    return z


def _plus_z_loss(loss: torch.Tensor, z: torch.Tensor, z_loss) -> torch.Tensor:
    if z_loss is None:
        return loss
    return loss + z_loss * torch.logsumexp(z, dim=-1) ** 2


def _head_cross_entropy(logits, labels, softcap=None, temperature=None, z_loss=None):
    z = softcapped(logits, softcap, temperature)
    return _plus_z_loss(F.cross_entropy(z, labels, reduction="none"), z, z_loss)


def _head_unlabelled(op):
    def function(logits, labels, softcap=None, temperature=None):
        return op(softcapped(logits, softcap, temperature), dim=-1)

    return function


def bounds(classes: int, shards: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each shard's classes under ``SPLIT_RULE``."""
    quotient, remainder = classes // shards, classes % shards  # not divmod: torch.compile
    out, start = [], 0
    for index in range(shards):
        stop = start + quotient + (index < remainder)
        out.append((start, stop))
        start = stop
    return out


def vocab_parallel(
    logits, labels, shards=1, label_smoothing=0.0, softcap=None, temperature=None, z_loss=None
):
    """Megatron's ``vocab_parallel_cross_entropy`` (megatron/core/tensor_parallel/
    cross_entropy.py) with each rank's slice a view: float32 for 16-bit logits as Megatron
    casts them, the max detached, max and sums all-reduced as sums over the slices, the
    label's logit taken from the slice that holds it, smoothing from each slice's
    log-probabilities; the loss is returned in the logits' dtype."""
    wide = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    z = softcapped(wide, softcap, temperature)
    classes = int(z.shape[-1])  # static: the split shapes the graph (torch.compile specialises)
    pieces = [(start, z[:, start:stop]) for start, stop in bounds(classes, int(shards))]
    top = torch.stack([piece.max(dim=-1).values for _, piece in pieces]).max(dim=0).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top)).detach()[:, None]
    total = sum(torch.exp(piece - top).sum(dim=-1) for _, piece in pieces)
    log_s = torch.log(total)
    target = torch.zeros_like(log_s)
    for start, piece in pieces:
        mine = (labels >= start) & (labels < start + piece.shape[-1])
        local = (labels - start).clamp(0, piece.shape[-1] - 1)
        picked = piece.gather(1, local[:, None])[:, 0] - top[:, 0]
        target = target + torch.where(mine, picked, torch.zeros_like(picked))
    loss = log_s - target
    if label_smoothing:
        spread = sum((log_s[:, None] - (piece - top)).sum(dim=-1) for _, piece in pieces)
        loss = (1 - label_smoothing) * loss + label_smoothing / classes * spread
    if z_loss is not None:
        loss = loss + z_loss * (top[:, 0] + log_s) ** 2
    return loss.to(logits.dtype)


def _linear_head(x, w, b, y, ignore_index, softcap=None, temperature=None, z_loss=None):
    """F.linear, the head's composition (adapters.torch_head), F.cross_entropy, + z-loss on
    the rows that are not padding."""
    z = softcapped(F.linear(x, w, b), softcap, temperature)
    loss = F.cross_entropy(z, y, reduction="none", ignore_index=ignore_index)
    if z_loss is None:
        return loss
    kept = y != ignore_index
    return loss + torch.where(kept, z_loss * torch.logsumexp(z, dim=-1) ** 2, 0.0)


OP = _fused(_chunking(batch_chunk_size=16, acc_policy="compact"))


def tensor(array):
    tensor = torch.tensor(array, device=torch.device(DEVICE))
    return tensor if tensor.dtype == torch.int64 else tensor.to(getattr(torch, DTYPE))


def run_linear(x, y):
    bias = OPTIONS.get("bias")
    tensors = [None if a is None else tensor(a) for a in (x, OPTIONS["weight"], bias)]
    wanted = {"grad_hidden": 0, "grad_weight": 1, "grad_bias": 2}.get(QUANTITY)
    if wanted is not None:
        tensors[wanted].requires_grad_(True)
    head = {k: tensor(v) if isinstance(v, np.ndarray) else v
            for k, v in OPTIONS.items() if k in ("softcap", "temperature", "z_loss")}
    output = OP(*tensors, tensor(y), int(OPTIONS.get("ignore_index", -100)), **head)
    if wanted is not None:
        (output,) = torch.autograd.grad(output.sum(), tensors[wanted])
    return output


def run_op(x, y):
    xt = tensor(x).requires_grad_(QUANTITY == "grad")
    y = None if y is None else tensor(y)
    options = {k: tensor(v) if isinstance(v, np.ndarray) else v for k, v in OPTIONS.items()}
    cotangent, tangent = options.pop("cotangent", None), options.pop("tangent", None)

    def function(logits, labels):
        return OP(logits, labels, **options)

    if QUANTITY == "jvp":  # compiled whole, as the adapter does
        tangent = torch.ones_like(xt) if tangent is None else tangent
        value = function

        def function(logits, labels, tangent):
            return torch.func.jvp(lambda z: value(z, labels), (logits,), (tangent,))[1]

    if MODE == "compiled":
        function = torch.compile(function, fullgraph=True)
    output = function(xt, y, tangent) if QUANTITY == "jvp" else function(xt, y)
    if QUANTITY == "grad" and cotangent is None:
        (output,) = torch.autograd.grad(output.sum(), xt)
    elif QUANTITY == "grad":
        (output,) = torch.autograd.grad(output, xt, grad_outputs=cotangent)
    return output


def run(x, y):
    output = run_linear(x, y) if "weight" in OPTIONS else run_op(x, y)
    return output.detach().to(torch.float64).cpu().numpy()


def kind_mismatch(got, truth):
    """The failure mode of one element whose kind (NaN, infinity, finite) is wrong, or None."""
    if np.isnan(got):
        if np.isnan(truth):
            return None
        return "nan-for-finite" if np.isfinite(truth) else "nan-for-infinite"
    if np.isinf(got):
        if np.isfinite(truth):
            return "inf-for-finite"
        return None if got == truth else "wrong-infinity"
    return None if np.isfinite(truth) else "finite-for-nonfinite"


def measure(got):
    """Per element: kind mismatch, absolute, relative and ULP error, and error / allowance."""
    with np.errstate(all="ignore"):
        absolute = np.abs((got - EXPECTED_HI) - EXPECTED_LO)
        right = np.isfinite(got) & np.isfinite(TRUTH)
        absolute = np.where(right, absolute, np.nan)
        relative = absolute / np.abs(EXPECTED_HI)
        ulps = absolute / ULP
        ratio = absolute / ALLOWANCE
    kinds = np.vectorize(kind_mismatch, otypes=[object])(got, TRUTH)
    return kinds, absolute, relative, ulps, ratio


def show(got, title):
    kinds, absolute, relative, ulps, ratio = measure(got)
    print(title)
    def rank(i):
        return (kinds[i] is None, -np.nan_to_num(ratio[i], nan=-1))

    order = sorted(np.ndindex(got.shape), key=rank)
    for index in order[:8]:
        got_i, expected_i = float(got[index]), float(EXPECTED_HI[index])
        print(f"  {index}: got {got_i!r}, expected {expected_i!r}, "
              f"abs {absolute[index]:.3g}, rel {relative[index]:.3g}, "
              f"ULP error {ulps[index]:.3g} (allowed {ALLOWANCE[index] / ULP[index]:.3g})"
              + (f"  <- {kinds[index]}" if kinds[index] else ""))
    failing = any(k is not None for k in kinds.flat)
    return kinds, ratio, failing or bool(np.nanmax(ratio, initial=0) > 1)


def invariant_broken(name, got):
    rows = np.isfinite(LOGITS).all(axis=-1)
    if LABELS is not None and LABELS.dtype.kind == "f" and LABELS.shape == LOGITS.shape:
        rows &= np.isfinite(LABELS).all(axis=-1) & (LABELS >= 0).all(axis=-1)
    got, x = got[rows], LOGITS[rows]
    if name == "sums_to_one":
        off = np.abs(got.sum(axis=-1) - 1) > SUMS_TO_ONE_TOLERANCE
        return bool(off.any() or np.isnan(got).any())
    if name == "argmax_preserved":
        top = (x == x.max(axis=-1, keepdims=True)) & (got == got.max(axis=-1, keepdims=True))
        return not top.any(axis=-1).all()
    if name == "log_softmax_nonpositive":
        return not (got <= 0).all()
    if name == "nonnegative_loss":
        return not (got >= 0).all()
    raise SystemExit(f"unknown invariant {name}")


def present():
    try:
        got = run(LOGITS, LABELS)
    except Exception as exc:
        print(f"raised {type(exc).__name__}: {exc}")
        return FAILURE_MODE in ("raises-on-valid-input", "shift-variant")
    if FAILURE_MODE == "answers-invalid-input":
        print(f"returned {got!r} for class ids {LABELS!r} outside [0, {LOGITS.shape[-1]})")
        return True
    if FAILURE_MODE == "raises-on-valid-input":
        print(f"returned without raising: {got!r}")
        return False
    if got.shape != EXPECTED_HI.shape:
        print(f"output shape {got.shape}, expected {EXPECTED_HI.shape}")
        return True
    kinds, ratio, failing = show(got, f"{IMPLEMENTATION} {QUANTITY} ({DTYPE}):")
    if FAILURE_MODE in ("over-budget", "flushed-subnormal"):  # both: beyond the budget
        right_kind = np.array([k is None for k in kinds.flat])
        return bool(np.nanmax(np.where(right_kind, ratio.ravel(), np.nan), initial=0) > 1)
    if FAILURE_MODE == "shift-variant":
        try:
            moved = run(SHIFTED_LOGITS, LABELS)
        except Exception as exc:
            print(f"on the shifted logits: raised {type(exc).__name__}: {exc}")
            return True
        title = "the same call on the logits shifted exactly by a constant:"
        _, _, moved_failing = show(moved, title)
        return moved_failing and not np.array_equal(got, moved, equal_nan=True)
    if FAILURE_MODE.startswith("invariant:"):
        return invariant_broken(FAILURE_MODE.split(":", 1)[1], got)
    return FAILURE_MODE in set(kinds.flat)


if __name__ == "__main__":
    still = present()
    print(f"{FINDING} {FAILURE_MODE}: {'PRESENT' if still else 'gone'}")
    sys.exit(1 if still else 0)
