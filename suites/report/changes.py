"""The shared layout of one change between two runs (``suites.report.compare``): accuracy and
timing changes fill one table, keyed like the results but with ``case`` the case id or the
shape and ``detail`` the quantity or the pass.
"""

from __future__ import annotations

import math

import pandas as pd

KEY_COLUMNS = ["suite", "implementation", "case", "dtype", "device", "mode", "detail"]
# ``base``/``new`` are display text; ``base_value``/``new_value`` the numbers (JSON only).
CHANGE_COLUMNS = [
    *KEY_COLUMNS,
    "kind",
    "base",
    "new",
    "ratio",
    "p_value",
    "flags",
    "version",
    "base_value",
    "new_value",
]


def change_rows(
    rows: pd.DataFrame, kind: str, text, values, ratio, direction, p_value=math.nan, flags=""
) -> pd.DataFrame:
    """Changes in the shared layout; ``version`` shows an upgrade as ``old -> new``.

    ``text`` and ``values`` are (base, new) pairs: display strings and the numbers behind them.
    """
    old_version = rows["backend_version_base"].fillna("")
    new_version = rows["backend_version_new"].fillna("")
    version = old_version.where(old_version == new_version, old_version + " -> " + new_version)
    found = rows[KEY_COLUMNS].assign(
        kind=kind,
        base=text[0],
        new=text[1],
        ratio=ratio,
        p_value=p_value,
        flags=flags,
        version=version,
        base_value=values[0],
        new_value=values[1],
        direction=direction,
    )
    return found.reset_index(drop=True)
