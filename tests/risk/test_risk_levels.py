"""Tests of assign_levels and transitions: hysteresis, hold times and unknown."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from predictor.config import LevelConfig
from predictor.risk import UNKNOWN, LevelState, assign_levels, transitions

# The defaults: elevated 0.5, high 0.7, critical 0.85, exit margin 0.1,
# enter after 3 consecutive scores, exit after 6.
CONFIG = LevelConfig()
NAN = float("nan")


def _levels(risk, stale=None, state=None, config=CONFIG):
    stale = [False] * len(risk) if stale is None else stale
    states, _ = assign_levels(risk, stale, state or LevelState(), config)
    return [s.level for s in states]


def _entries(previous: LevelState, states: list[LevelState], level: str) -> list[int]:
    return [index for index, _, new in transitions(previous, states) if new == level]


def test_hovering_at_critical_never_enters_critical():
    """Never three critical scores in a row, so critical is never confirmed."""
    risk = [0.87, 0.83, 0.88, 0.87, 0.80, 0.90, 0.84] * 20
    states, _ = assign_levels(risk, [False] * len(risk), LevelState(), CONFIG)

    assert _entries(LevelState(), states, "critical") == []
    assert states[-1].level == "high"


def test_sustained_rise_enters_critical_once():
    rng = np.random.default_rng(0)
    rise = np.clip(np.linspace(0.1, 0.97, 120) + rng.normal(0.0, 0.03, 120), 0.0, 1.0)
    risk = np.r_[rise, np.clip(0.95 + rng.normal(0.0, 0.03, 60), 0.0, 1.0)]
    states, final = assign_levels(risk, [False] * len(risk), LevelState(), CONFIG)

    entries = _entries(LevelState(), states, "critical")
    assert len(entries) == 1
    first_critical_run = next(
        i for i in range(2, len(risk)) if all(risk[i - 2:i + 1] >= CONFIG.critical)
    )
    assert entries[0] == first_critical_run
    assert final.level == "critical"


def test_levels_pass_through_in_order_on_rise():
    risk = [0.55] * 3 + [0.75] * 3 + [0.9] * 3
    states, _ = assign_levels(risk, [False] * 9, LevelState(), CONFIG)

    assert transitions(LevelState(), states) == [
        (2, "normal", "elevated"), (5, "elevated", "high"), (8, "high", "critical"),
    ]


def test_spike_to_critical_among_highs_enters_high():
    assert _levels([0.75, 0.95, 0.75]) == ["normal", "normal", "high"]


def test_jump_enters_lowest_level_of_the_run():
    assert _levels([0.9, 0.9, 0.6, 0.9, 0.9, 0.9]) == [
        "normal", "normal", "elevated", "elevated", "elevated", "critical",
    ]


def test_rise_run_resets_on_lower_score():
    assert _levels([0.9, 0.9, 0.2, 0.9, 0.9]) == ["normal"] * 5


def test_pending_fields_track_the_run():
    states, _ = assign_levels([0.9, 0.75], [False, False], LevelState(), CONFIG)

    assert states[0] == LevelState("normal", "critical", 1)
    assert states[1] == LevelState("normal", "high", 2)


def test_fall_needs_exit_consecutive_scores():
    start = LevelState("critical")
    risk = [0.5] * (CONFIG.exit_consecutive - 1)
    assert _levels(risk, state=start) == ["critical"] * len(risk)

    risk = [0.5] * CONFIG.exit_consecutive
    states, final = assign_levels(risk, [False] * len(risk), start, CONFIG)
    assert transitions(start, states) == [(len(risk) - 1, "critical", "elevated")]
    assert final == LevelState("elevated")


def test_fall_run_resets_when_risk_returns():
    risk = [0.5] * 5 + [0.8] + [0.5] * 5
    assert _levels(risk, state=LevelState("critical")) == ["critical"] * 11


def test_risk_within_exit_margin_holds_level():
    risk = [0.76, 0.80, 0.78] * 10
    assert set(_levels(risk, state=LevelState("critical"))) == {"critical"}


def test_fall_goes_to_highest_exit_level():
    risk = [0.1, 0.1, 0.65, 0.1, 0.1, 0.1]
    assert _levels(risk, state=LevelState("critical"))[-1] == "high"


def test_fall_to_normal_in_one_step():
    states, final = assign_levels([0.05] * 6, [False] * 6, LevelState("critical"), CONFIG)

    assert transitions(LevelState("critical"), states) == [(5, "critical", "normal")]
    assert final == LevelState("normal")


def test_stale_scores_are_unknown_at_once():
    risk = [0.1, 0.1, 0.1, 0.1]
    stale = [False, True, True, False]
    assert _levels(risk, stale) == ["normal", UNKNOWN, UNKNOWN, "normal"]


def test_nan_risk_is_unknown_never_normal():
    levels = _levels([NAN, NAN, NAN], state=LevelState("critical"))
    assert levels == [UNKNOWN] * 3


def test_unknown_drops_pending_run():
    states, _ = assign_levels([0.9, 0.9, NAN, 0.9], [False] * 4, LevelState(), CONFIG)

    assert states[2] == LevelState(UNKNOWN)
    assert states[3] == LevelState("normal", "critical", 1)


def test_return_from_unknown_needs_confirmation():
    start = LevelState("critical")
    risk = [0.95, 0.95, 0.95, 0.95, 0.95]
    stale = [True, False, False, False, False]
    states, _ = assign_levels(risk, stale, start, CONFIG)

    assert [s.level for s in states] == [UNKNOWN, "normal", "normal", "critical", "critical"]
    assert transitions(start, states) == [
        (0, "critical", UNKNOWN), (1, UNKNOWN, "normal"), (3, "normal", "critical"),
    ]


def test_resuming_from_state_matches_one_pass():
    rng = np.random.default_rng(1)
    risk = np.clip(np.cumsum(rng.normal(0.0, 0.08, 300)) % 1.0, 0.0, 1.0)
    stale = rng.uniform(size=300) < 0.03
    whole, _ = assign_levels(risk, stale, LevelState(), CONFIG)

    resumed = []
    state = LevelState()
    for start in range(0, 300, 37):
        stored = dataclasses.asdict(state)
        part, state = assign_levels(
            risk[start:start + 37], stale[start:start + 37], LevelState(**stored), CONFIG
        )
        resumed.extend(part)

    assert resumed == whole
    assert len({s.level for s in whole}) >= 3


def test_enter_consecutive_one_enters_at_once():
    config = LevelConfig(enter_consecutive=1, exit_consecutive=1)
    assert _levels([0.9, 0.1], config=config) == ["critical", "normal"]


def test_empty_input_returns_given_state():
    state = LevelState("high", "critical", 2)
    states, final = assign_levels([], [], state, CONFIG)

    assert states == []
    assert final is state


def test_transitions_lists_each_change():
    states = [LevelState("normal"), LevelState("high"), LevelState("high"), LevelState(UNKNOWN)]

    assert transitions(LevelState("normal"), states) == [(1, "normal", "high"),
                                                         (3, "high", UNKNOWN)]
    assert transitions(LevelState("normal"), []) == []


@pytest.mark.parametrize(
    ("risk", "stale", "state", "error", "match"),
    [
        ([0.1, 0.2], [False], LevelState(), ValueError,
         r"stale: expected one flag per risk score \(2\), got 1"),
        ([1.5], [False], LevelState(), ValueError,
         r"risk\[0\]: expected a number in \[0, 1\] or NaN, got 1.5"),
        (["high"], [False], LevelState(), TypeError, r"risk\[0\]: expected a number"),
        ([0.1], [False], LevelState("red"), ValueError, "state.level: expected one of"),
        ([0.1], [False], LevelState("high", "amber", 1), ValueError,
         "state.pending_level: expected None or one of"),
        ([0.1], [False], LevelState("high", "critical", -1), ValueError,
         "state.pending_count: expected an integer >= 0, got -1"),
    ],
)
def test_assign_levels_rejects_bad_input(risk, stale, state, error, match):
    with pytest.raises(error, match=match):
        assign_levels(risk, stale, state, CONFIG)
