"""Where ``xentbench hunt`` keeps a hunted input in a run directory, and how its options load.

One naming for the hunt that writes them, its options task and the reproducers that read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def hunted_files(run_dir: Path, name: str) -> dict[str, Path]:
    """Where the files of a hunted input live in a run directory (``name``: the hash of its case
    id ``hunt/<op>/<name>``): logits, labels, exact value and, for option rows, options."""
    folder = Path(run_dir) / "hunt"
    kinds = (("logits", "npy"), ("labels", "npy"), ("exact", "npz"), ("options", "npz"))
    return {kind: folder / f"{name}-{kind}.{ext}" for kind, ext in kinds}


def load_hunted_options(run_dir: Path, name: str) -> dict[str, Any]:
    """A hunted option row's call options as saved: arrays, and scalars as Python values."""
    with np.load(hunted_files(run_dir, name)["options"], allow_pickle=False) as saved:
        return {key: value.item() if value.ndim == 0 else value for key, value in saved.items()}
