"""The hunt's LLM-head dimensions (softcap, temperature with z-loss, the three together, and
vocabulary-parallel shards with smoothing for the cross-entropies; a cap, a temperature and
both for softmax, log_softmax and logsumexp; ``suites.hunt.options.CONFIGS``): a from-scratch
hunt flags flawed head, softmax-head and sharded plugins and leaves the careful ones alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from flawed import head as flawed_head
from flawed import head_softmax as flawed_head_softmax
from flawed import sharded as flawed_sharded
from hunt_helpers import assert_flagged, assert_passed, hunt_plugins, option_rows

PLUGINS = {
    **flawed_head.ENTRY_POINTS,
    **flawed_head_softmax.ENTRY_POINTS,
    **flawed_sharded.ENTRY_POINTS,
}
WITHOUT_1_OVER_T = "backward-without-1-over-T"
# Every test reads one hunt: on one worker it runs once, not once per worker.
pytestmark = pytest.mark.xdist_group("hunt-head")


@pytest.fixture(scope="module")
def hunted_head(tmp_path_factory) -> Path:
    return hunt_plugins(tmp_path_factory, PLUGINS, "hunt-head", ("value", "grad"))


@pytest.mark.parametrize(
    ("implementation", "configuration"),
    [
        ("sharded_flawed:sum-reduced-twice", "shards 3"),
        ("sharded_flawed:smoothing-over-local-v", "shards 3"),
        ("head_flawed:z-loss-grad-without-2", "z-loss"),
        (f"head_flawed:{WITHOUT_1_OVER_T}", "temperature"),
        ("head_flawed:backward-without-sech2", "softcap 30"),
        *(
            (f"head_softmax_flawed:{op}:{WITHOUT_1_OVER_T}", "temperature")
            for op in flawed_head_softmax.OPS
        ),
    ],
)
def test_the_hunt_flags_flawed_head_plugins(hunted_head, implementation, configuration):
    assert_flagged(hunted_head, implementation, configuration)


def test_the_hunt_leaves_the_careful_head_plugins_alone(hunted_head):
    assert_passed(hunted_head, {"head_careful", "sharded_careful", "head_softmax_careful"})


def test_the_softmax_family_is_hunted_with_its_own_options_only(hunted_head):
    rows = option_rows(hunted_head)
    mine = rows[rows["backend"] == "head_softmax_careful"]
    assert set(mine["op"]) == set(flawed_head_softmax.OPS)
    assert not mine["options"].str.contains("z_loss|shards|reduction").any()
    grads = mine[mine["quantity"] == "grad"]
    vjp = grads[grads["op"] != "logsumexp"]  # a drawn cotangent: ones give softmax's VJP 0
    assert not vjp.empty and vjp["options"].str.contains("cotangent=").all()
    assert not mine[mine["quantity"] == "value"]["options"].str.contains("cotangent").any()
