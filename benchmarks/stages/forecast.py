"""Degradation forecasts for a fleet: the vectorised fit against statsmodels per series.

Each component contributes one real metric series of :data:`STEPS` points (a week at
5-minute steps) from :func:`benchmarks.fleet.fleet_series`. The last :data:`TAIL_STEPS`
points (one forecast horizon) are held back; both fits see the points before them.

Ours is :func:`predictor.forecast.batch.fit_forecasters` on every series. The peer is
statsmodels ``ExponentialSmoothing`` with the forecaster's model (additive damped trend,
estimated initial state, level smoothing bounded below by
:func:`~predictor.forecast.exponential.min_level_smoothing`), fitted series by series on
a seeded random sample of :func:`peer_sample_size` series in the same run.

The compiled (numba) loops of ours are loaded from their disk cache, or compiled when
it is missing, before the timed call; ``compile_s`` reports that one-time cost, and
``ratio_with_compile`` the ratio with it added to ``wall_s``. The loops run on one
thread.

Both forecast the held-back tail from the end of training, and the stage reports the
mean MASE of each over the sample (series whose training values never change have no
MASE scale and are left out of both means, and counted in ``mase_skipped``).
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pandas as pd
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from benchmarks.fleet import fleet_series
from benchmarks.stages import StageContext
from predictor.forecast._recursion import damped_trend_sums
from predictor.forecast.batch import fit_forecasters, warm_up_kernels
from predictor.forecast.exponential import min_level_smoothing

logger = logging.getLogger(__name__)

#: Points per series: a week at 5-minute steps.
STEPS = 2016
#: Held-back points at the end of each series, one forecast horizon.
TAIL_STEPS = 12
HORIZON_STEPS = 12
#: Fewest series statsmodels is fitted on.
MIN_PEER_SAMPLE = 200
SEED = 0
#: Cache file of :func:`prepare`; the version changes with what prepare writes.
SERIES_FILE = "series-v1.npy"


def peer_sample_size(components: int) -> int:
    """Return how many series statsmodels is fitted on: 2 % of the fleet, at least 200."""
    return min(components, max(MIN_PEER_SAMPLE, components // 50))


def prepare(ctx: StageContext) -> None:
    """Replay the fleet's series once and cache them under ``ctx.workdir``."""
    path = ctx.workdir / SERIES_FILE
    if path.is_file():
        return
    values = fleet_series(ctx.components, steps=STEPS, data_dir=ctx.data_dir, seed=SEED)
    np.save(path, values)
    logger.info("forecast: cached %d series of %d points in %s", *values.shape, path)


def measure(ctx: StageContext) -> dict[str, object]:
    """Time both fits in this process and compare their tail forecasts."""
    values = np.load(ctx.workdir / SERIES_FILE)
    train, tail = values[:, :-TAIL_STEPS], values[:, -TAIL_STEPS:]
    index = pd.date_range("2024-01-01", periods=train.shape[1], freq="5min", tz="UTC")
    series = [pd.Series(row, index=index, name=f"series-{i}") for i, row in enumerate(train)]
    thresholds = list(np.nanmax(train, axis=1) * 1.5 + 1.0)

    # The one-time load (or compile) of the numba loops is reported apart from wall_s.
    warm = warm_up_kernels()
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Implausible trend fits fall back to simple smoothing with a warning each.
        warnings.simplefilter("ignore")
        forecasters = fit_forecasters(
            series,
            thresholds=thresholds,
            directions=["above"] * len(series),
            horizon_steps=HORIZON_STEPS,
        )
    wall_s = time.perf_counter() - started

    sample = np.sort(
        np.random.default_rng(SEED).choice(
            len(series), size=peer_sample_size(len(series)), replace=False
        )
    )
    peer_forecasts, peer_wall_s = _fit_peer(train[sample])
    ours = np.stack([_tail_forecast(forecasters[i]) for i in sample])
    scale = np.mean(np.abs(np.diff(train[sample], axis=1)), axis=1)
    scored = scale > 0.0
    mase_ours = _mase(ours, tail[sample], scale, scored)
    mase_peer = _mase(peer_forecasts, tail[sample], scale, scored)
    peer_per_series = peer_wall_s / len(sample)
    models = pd.Series([f.model_ for f in forecasters]).value_counts().to_dict()
    logger.info(
        "forecast: ours %.2f s for %d series, statsmodels %.3f s per series on %d; models %s",
        wall_s,
        len(series),
        peer_per_series,
        len(sample),
        models,
    )
    return {
        "wall_s": round(wall_s, 3),
        "series_per_s": round(len(series) / wall_s, 1),
        "series_steps": STEPS,
        "tail_steps": TAIL_STEPS,
        "peer": "statsmodels ExponentialSmoothing, damped additive trend, per series",
        "peer_wall_s_per_series": round(peer_per_series, 5),
        "peer_sample": len(sample),
        "ratio": round(peer_per_series / (wall_s / len(series)), 1),
        "compile_s": round(warm["compile_s"], 3),
        "compile_source": warm["compile_source"],
        "wall_s_includes_compile": False,
        "ratio_with_compile": round(
            peer_per_series / ((wall_s + warm["compile_s"]) / len(series)), 1
        ),
        "numba_threads": 1,
        "mase_ours": round(mase_ours, 5),
        "mase_statsmodels": round(mase_peer, 5),
        "mase_ratio": round(mase_ours / mase_peer, 4),
        "mase_skipped": int((~scored).sum()),
        "models": models,
    }


def _fit_peer(train: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit statsmodels per series; return tail forecasts and the total fit seconds."""
    forecasts = np.empty((len(train), TAIL_STEPS))
    total = 0.0
    for row, values in enumerate(train):
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = ExponentialSmoothing(
                values,
                trend="add",
                damped_trend=True,
                initialization_method="estimated",
                bounds={"smoothing_level": (min_level_smoothing(HORIZON_STEPS), 1.0)},
            ).fit()
        total += time.perf_counter() - started
        forecasts[row] = result.forecast(TAIL_STEPS)
    return forecasts, total


def _tail_forecast(forecaster) -> np.ndarray:
    """Return the unclipped mean forecast for 1 to TAIL_STEPS steps ahead."""
    params = forecaster._params()
    return forecaster.level_ + damped_trend_sums(params.phi, TAIL_STEPS) * forecaster.trend_


def _mase(
    forecasts: np.ndarray, actual: np.ndarray, scale: np.ndarray, scored: np.ndarray
) -> float:
    errors = np.mean(np.abs(forecasts - actual), axis=1)
    return float(np.mean(errors[scored] / scale[scored]))
