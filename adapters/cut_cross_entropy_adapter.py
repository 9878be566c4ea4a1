"""Cut Cross-Entropy (Apple's ``cut-cross-entropy`` on PyPI): a fused linear cross-entropy,
registered as a *plugin* backend through the ``xentbench.adapters`` entry point (pyproject's
``[project.entry-points."xentbench.adapters"]``), as docs/adding-a-backend.md tells third
parties to do.

``cut_cross_entropy.linear_cross_entropy(e, c, targets, ...)`` has two paths: ``impl="cce"``,
Triton kernels that never materialise the logits (CUDA only), and ``impl="torch_compile"``,
``e @ c.T`` then ``F.cross_entropy(logits.float())`` under ``torch.compile``, which runs on
the CPU. The package imports ``triton`` at import time on Linux even for the second path, so
both need triton installed (the optional extra ``cut-cross-entropy`` pulls it in). CCE takes
no bias; ``filter_eps="high"`` (the default) skips gradient entries it deems negligible, which
is part of what is measured. ``softcap=cap`` caps the logits (``cap * tanh(logits / cap)``,
Gemma 2's) before the loss on both paths, in the logits' dtype on torch_compile; CCE has no
temperature or z-loss argument. float64 inputs are computed in float32 (``logits.float()``) by the
torch_compile path, so only float16, bfloat16 and float32 are declared.
"""

from __future__ import annotations

from importlib.metadata import version as distribution_version

import cut_cross_entropy
import torch

from xentbench.adapters.base import LINEAR_OP, Adapter, Call, Implementation, PreparedCall
from xentbench.adapters.torch_adapter import prepare_linear

PATHS = {"torch_compile": ("cpu", "cuda"), "cce": ("cuda",)}


def _function(impl: str):
    def linear_cross_entropy(x, w, b, y, ignore_index, softcap=None):
        return cut_cross_entropy.linear_cross_entropy(
            x, w, y, ignore_index=ignore_index, softcap=softcap, reduction="none", impl=impl
        )

    return linear_cross_entropy


class CutCrossEntropyAdapter(Adapter):
    """cut_cross_entropy.linear_cross_entropy on its torch_compile (CPU, CUDA) and cce (CUDA)
    paths, with autograd gradients w.r.t. the hidden states and the classifier weight."""

    name = "cut_cross_entropy"

    def version(self) -> str:
        package = distribution_version("cut-cross-entropy")
        return f"cut-cross-entropy {package}, torch {torch.__version__}"

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def implementations(self) -> tuple[Implementation, ...]:
        return tuple(
            Implementation(
                name=f"cut_cross_entropy:linear_cross_entropy(impl={impl})",
                op=LINEAR_OP,
                dtypes=("float16", "bfloat16", "float32"),
                devices=devices,
                gradient=True,
                options=("weight", "ignore_index", "softcap"),
                adaptation="reduction='none'; softcap=cap (no temperature or z-loss); gradients "
                "of the summed loss by autograd",
            )
            for impl, devices in PATHS.items()
        )

    def prepare(self, call: Call, logits, labels) -> PreparedCall:
        impl = call.implementation.api.removeprefix("linear_cross_entropy(impl=").rstrip(")")
        return prepare_linear(call, _function(impl), logits, labels)
