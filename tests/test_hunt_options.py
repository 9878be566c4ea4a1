"""The hunt's options family (cross-entropy options in the hunt): a from-scratch hunt through
the public CLI flags each deliberately flawed option implementation of
``tests/flawed/options.py`` and leaves the careful one (extended precision, rounded once)
alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flawed import options as flawed_options
from hunt_helpers import assert_flagged, assert_passed, hunt_plugins, option_rows

from xentbench.reference import exact
from xentbench.reference.options import canonical
from xentbench.suites.hunt import hunted

PLUGINS = flawed_options.ENTRY_POINTS


# Every test reads one hunt: on one worker it runs once, not once per worker.
pytestmark = pytest.mark.xdist_group("hunt-options")


@pytest.fixture(scope="module")
def hunted_options(tmp_path_factory) -> Path:
    return hunt_plugins(tmp_path_factory, PLUGINS, "hunt-options", ("value",))


@pytest.mark.parametrize(
    ("mistake", "configuration"),
    [
        ("mean-over-all-rows", "ignored"),
        ("smoothing-over-c-minus-1", "smoothing"),
        ("weighted-mean-over-n", "class weights"),
    ],
)
def test_hunt_flags_each_flawed_option_implementation(hunted_options, mistake, configuration):
    assert_flagged(hunted_options, f"options_flawed:{mistake}", configuration)


def test_hunt_does_not_flag_the_careful_option_implementation(hunted_options):
    rows = option_rows(hunted_options)
    assert len(rows[rows["backend"] == "options_careful"]) >= 5  # one per configuration it takes
    assert_passed(hunted_options, {"options_careful"})


def test_a_hunted_option_batch_is_saved_with_its_options(hunted_options):
    rows = option_rows(hunted_options)
    mine = rows[rows["implementation"] == "options_flawed:mean-over-all-rows"]
    row = mine[mine["verdict"] == "inaccurate"].iloc[0]
    name = row["case_id"].rsplit("/", 1)[1]
    folder = hunted_options / "hunt"
    logits = np.load(folder / f"{name}-logits.npy")
    labels = np.load(folder / f"{name}-labels.npy")
    options = hunted.load_hunted_options(hunted_options, name)
    assert canonical(options) == row["options"]
    truth = exact("sparse_softmax_cross_entropy", logits, labels, "value", **options)
    saved = np.load(folder / f"{name}-exact.npz", allow_pickle=False)
    np.testing.assert_array_equal(saved["hi"], truth.hi)
    assert float(row["expected"]) == float(truth.hi)
