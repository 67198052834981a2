"""Risk levels with hysteresis: normal, elevated, high, critical, and unknown."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from predictor.config import LEVELS, LevelConfig

UNKNOWN = "unknown"

__all__ = ["LEVELS", "UNKNOWN", "LevelState", "assign_levels", "transitions"]


@dataclass
class LevelState:
    """A component's level and the run of scores that may change it.

    The risk store keeps the three fields with every score row, so scoring can resume
    from the newest row.

    Parameters
    ----------
    level : str, default="normal"
        One of ``LEVELS`` or ``UNKNOWN``.
    pending_level : str or None, default=None
        The level that the current run of scores points to: above ``level`` while
        confirming a rise, below it while confirming a fall. None without a run.
    pending_count : int, default=0
        Consecutive scores in the current run.
    """

    level: str = "normal"
    pending_level: str | None = None
    pending_count: int = 0


def assign_levels(
    risk: Sequence[float],
    stale: Sequence[bool],
    state: LevelState,
    config: LevelConfig,
) -> tuple[list[LevelState], LevelState]:
    """Assign a level to each risk score in time order, with hysteresis.

    Rules, applied to each score in turn:

    - **Unknown.** A stale score or a NaN risk sets the level to ``"unknown"`` at once and
      drops any pending run. Missing telemetry never reads as ``"normal"``.
    - **Return from unknown.** The first fresh score starts again from ``"normal"`` under
      the rules below. A higher level is entered only once confirmed by
      ``enter_consecutive`` scores, like any other rise.
    - **Rise.** The target of a score is the highest level whose enter threshold
      (``config.enter_threshold``) the risk reaches. When the target is above the
      current level for ``enter_consecutive`` consecutive scores, the level rises to the
      lowest target seen in that run. A single spike to critical among high scores
      therefore enters high, not critical.
    - **Fall.** A level ``L`` above normal is kept while the risk is at or above its exit
      threshold ``enter_threshold(L) - exit_margin``. When the risk stays below it for
      ``exit_consecutive`` consecutive scores, the level falls to the highest level whose
      exit threshold the risk reached during that run (``"normal"`` when none).
    - **Otherwise** the level stays and a pending run is dropped. Any score that breaks a
      run resets it.

    Parameters
    ----------
    risk : sequence of float
        Fused risk per scoring time, in [0, 1] or NaN.
    stale : sequence of bool
        Whether the telemetry behind each score is stale, same length as ``risk``.
    state : LevelState
        State after the score just before ``risk[0]``.
    config : LevelConfig
        Enter thresholds, ``exit_margin``, ``enter_consecutive`` and ``exit_consecutive``.

    Returns
    -------
    states : list of LevelState
        State after each score.
    final : LevelState
        State after the last score (``state`` itself when ``risk`` is empty).

    Raises
    ------
    TypeError
        If a risk is not a number.
    ValueError
        If the lengths differ, a risk is outside [0, 1], or ``state`` names an unknown
        level or a negative count.

    Examples
    --------
    >>> from predictor.config import LevelConfig
    >>> from predictor.risk import LevelState, assign_levels
    >>> config = LevelConfig(enter_consecutive=2, exit_consecutive=2)
    >>> states, final = assign_levels([0.9, 0.95, 0.9, 0.1, 0.1], [False] * 5,
    ...                               LevelState(), config)
    >>> [s.level for s in states]
    ['normal', 'critical', 'critical', 'critical', 'normal']
    """
    if len(risk) != len(stale):
        raise ValueError(
            f"stale: expected one flag per risk score ({len(risk)}), got {len(stale)}"
        )
    _validate_state(state)

    states = []
    current = state
    for index, (value, is_stale) in enumerate(zip(risk, stale, strict=True)):
        current = _next_state(current, _checked_risk(value, index), bool(is_stale), config)
        states.append(current)
    return states, current


def transitions(previous: LevelState, states: list[LevelState]) -> list[tuple[int, str, str]]:
    """List the level changes in ``states``.

    Parameters
    ----------
    previous : LevelState
        State before ``states[0]``.
    states : list of LevelState
        States in time order, as :func:`assign_levels` returns them.

    Returns
    -------
    list of (int, str, str)
        ``(index, previous level, new level)`` for each score whose level differs from the
        level before it.

    Examples
    --------
    >>> from predictor.risk import LevelState, transitions
    >>> transitions(LevelState("normal"), [LevelState("high"), LevelState("high"),
    ...                                    LevelState("unknown")])
    [(0, 'normal', 'high'), (2, 'high', 'unknown')]
    """
    changes = []
    level = previous.level
    for index, state in enumerate(states):
        if state.level != level:
            changes.append((index, level, state.level))
        level = state.level
    return changes


def _next_state(state: LevelState, risk: float, stale: bool, config: LevelConfig) -> LevelState:
    if stale or math.isnan(risk):
        return LevelState(level=UNKNOWN)

    if state.level == UNKNOWN:
        rank, pending_rank, count = 0, None, 0
    else:
        rank = LEVELS.index(state.level)
        pending_rank = LEVELS.index(state.pending_level) if state.pending_level else None
        count = state.pending_count

    target = _target_rank(risk, config)
    if target > rank:
        if pending_rank is not None and pending_rank > rank:
            run_rank, count = min(pending_rank, target), count + 1
        else:
            run_rank, count = target, 1
        if count >= config.enter_consecutive:
            return LevelState(level=LEVELS[run_rank])
        return LevelState(LEVELS[rank], LEVELS[run_rank], count)

    exit_rank = _exit_rank(risk, config)
    if exit_rank < rank:
        if pending_rank is not None and pending_rank < rank:
            run_rank, count = max(pending_rank, exit_rank), count + 1
        else:
            run_rank, count = exit_rank, 1
        if count >= config.exit_consecutive:
            return LevelState(level=LEVELS[run_rank])
        return LevelState(LEVELS[rank], LEVELS[run_rank], count)

    return LevelState(level=LEVELS[rank])


def _target_rank(risk: float, config: LevelConfig) -> int:
    """Return the rank of the highest level whose enter threshold ``risk`` reaches."""
    rank = 0
    for candidate, level in enumerate(LEVELS):
        if risk >= config.enter_threshold(level):
            rank = candidate
    return rank


def _exit_rank(risk: float, config: LevelConfig) -> int:
    """Return the rank of the highest level whose exit threshold ``risk`` reaches."""
    rank = 0
    for candidate, level in enumerate(LEVELS[1:], start=1):
        if risk >= config.enter_threshold(level) - config.exit_margin:
            rank = candidate
    return rank


def _checked_risk(value: object, index: int) -> float:
    if not isinstance(value, numbers.Real):
        raise TypeError(f"risk[{index}]: expected a number in [0, 1] or NaN, got {value!r}")
    risk = float(value)
    if not math.isnan(risk) and not 0.0 <= risk <= 1.0:
        raise ValueError(f"risk[{index}]: expected a number in [0, 1] or NaN, got {value!r}")
    return risk


def _validate_state(state: LevelState) -> None:
    if state.level not in (*LEVELS, UNKNOWN):
        raise ValueError(f"state.level: expected one of {[*LEVELS, UNKNOWN]}, got {state.level!r}")
    if state.pending_level is not None and state.pending_level not in LEVELS:
        raise ValueError(
            f"state.pending_level: expected None or one of {list(LEVELS)}, "
            f"got {state.pending_level!r}"
        )
    if not isinstance(state.pending_count, numbers.Integral) or state.pending_count < 0:
        raise ValueError(
            f"state.pending_count: expected an integer >= 0, got {state.pending_count!r}"
        )
