"""Keras 3 on its torch backend: the Keras losses (``adapters.keras_losses``, as the TensorFlow
adapter declares them) and ``keras.ops``' softmax family, eager and ``torch.compile``.

A plugin registered through the ``xentbench.adapters`` entry point, installed by the optional
extra ``keras-torch``. Keras reads ``KERAS_BACKEND`` once per process, so this backend sets it
before importing Keras and is unavailable, with the reason, in a process whose Keras was
imported for another backend first (``xentbench run`` gives it a worker of its own). Inputs,
``torch.compile``, and the derivatives (``torch.autograd.grad``, ``torch.func.jvp``) are the
torch adapter's (``adapters.torch_adapter``). Keras moves every tensor to its own default
device (a GPU when torch sees one), so each call runs inside ``keras.device(<the call's
device>)``. ``from_logits=False`` losses take ``keras.ops.softmax`` / ``keras.ops.sigmoid`` of
the logits, as users write them.
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"  # Keras reads it once, on its first import

import keras
import numpy as np
import torch

from xentbench.adapters import keras_losses
from xentbench.adapters._table import everywhere
from xentbench.adapters.base import Call, Implementation, PreparedCall
from xentbench.adapters.torch_adapter import TorchAdapter

BACKEND = "keras_torch"


def declare(name: str, op: str, **fields) -> Implementation:
    """``keras_torch:<name>`` for every dtype, mode and device."""
    return everywhere(BACKEND, name, op, **fields)


class KerasTorchAdapter(TorchAdapter):
    """Keras 3 losses and ``keras.ops`` on the torch backend."""

    name = BACKEND

    def __init__(self) -> None:
        keras_losses.require_backend("torch")
        super().__init__()

    def version(self) -> str:
        return f"keras {keras.__version__}, torch {torch.__version__}"

    def entries(self) -> list:
        return keras_losses.keras_backend_entries(declare)

    def prepare(self, call: Call, logits: np.ndarray, labels: np.ndarray | None) -> PreparedCall:
        prepared = super().prepare(call, logits, labels)

        def run() -> torch.Tensor:
            with keras.device(call.device):
                return prepared.run()

        return PreparedCall(run=run, to_numpy=prepared.to_numpy)
