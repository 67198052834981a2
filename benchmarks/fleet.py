"""Generate a large fleet by replaying the rows of real servers, for the benchmarks.

Each generated component replays the labeled test rows of one real server of the
Server Machine Dataset (SMD, 38 metrics a minute) or the Application Server Dataset
(ASD, 19 metrics every 5 minutes), read from ``<data_dir>/{smd,asd}/test/*.txt.gz`` with
one 0/1 label per row in ``<data_dir>/{smd,asd}/test_label/<server>.txt``. Components
take the servers in turn (``gpu-node-00000`` the first server, ``gpu-node-00001`` the
second, ...) and each starts at its own random row of its server, wrapping around at
the end, so components of the same server are shifted in time against each other.

Every component has the same 20 metrics ``m00`` .. ``m19``:

- SMD: the 20 columns in :data:`SMD_COLUMNS` (0-based), the metrics that change over
  time on the SMD machines. The columns left out are constant or almost constant
  (``mem_shmem``, ``tcp_timeouts``, the UDP counters, ...).
- ASD: its 19 columns in order as ``m00`` .. ``m18``, and ``m19`` the mean of those 19
  columns of the row, because ASD has one metric fewer than the common schema.

The replayed rows are placed on a grid of ``step_seconds`` whatever the source cadence.
Each value is then perturbed: ``value = source * scale + noise``, with ``scale`` drawn
once per component and metric from ``1 + N(0, SCALE_SD)`` clipped to
``1 +- SCALE_LIMIT`` and ``noise`` drawn per value from ``N(0, NOISE_SD)`` clipped to
``+- NOISE_LIMIT``. Both data sets are min-max scaled to [0, 1], so the noise is small
on every metric. The label of a grid step is the label of the source row it replays.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: SMD columns (0-based, of ``metric_names.txt``) that become ``m00`` .. ``m19``:
#: cpu_r, load_1, load_5, load_15, mem_u, mem_u_e, disk_q, disk_r, disk_svc, disk_w,
#: disk_wa, disk_wb, eth1_fi, eth1_fo, eth1_pi, eth1_po, tcp_tw, tcp_use, curr_estab,
#: in_segs.
SMD_COLUMNS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 13, 14, 15, 18, 19, 20, 21, 22, 23, 25, 27)
SMD_WIDTH = 38
ASD_WIDTH = 19
FLEET_METRICS = 20

#: Perturbation of the replayed values (see the module docstring).
SCALE_SD = 0.01
SCALE_LIMIT = 0.03
NOISE_SD = 0.001
NOISE_LIMIT = 0.003

#: Metric of :func:`fleet_series` and of the threshold :func:`write_fleet_config` writes:
#: ``cpu_r`` on SMD components, the first column on ASD ones. Both change value on most steps.
SERIES_METRIC = "m00"

#: Quantile of :data:`SERIES_METRIC` over the fleet used as its ``above`` threshold.
THRESHOLD_QUANTILE = 0.99

# Random streams under the seed: start rows 0, scales 1, and the noise of each output.
NOISE_STREAM_FLEET = 2
NOISE_STREAM_SERIES = 3


def component_name(index: int) -> str:
    """Return the name of generated component ``index`` (``gpu-node-00000`` onwards)."""
    return f"gpu-node-{index:05d}"


def metric_names(metrics: int = FLEET_METRICS) -> list[str]:
    """Return the fleet's metric names, ``m00`` onwards."""
    return [f"m{index:02d}" for index in range(metrics)]


@dataclass
class FleetData:
    """A generated fleet.

    Attributes
    ----------
    rows : pandas.DataFrame
        Long telemetry ordered by component, timestamp and metric: ``timestamp``
        (datetime64[ns, UTC]), ``component`` and ``metric`` (categorical), ``value``
        (float64).
    labels : pandas.DataFrame
        One row per component and grid step: ``component`` (categorical), ``timestamp``
        (datetime64[ns, UTC]), ``label`` (int8, 1 = the source row is anomalous).
    groups : dict of str to str
        Group of each component: ``"smd"`` or ``"asd"``, the data set it replays.
    step_seconds : int
        Grid step of ``rows`` and ``labels``.
    """

    rows: pd.DataFrame
    labels: pd.DataFrame
    groups: dict[str, str]
    step_seconds: int


@dataclass(frozen=True)
class SourceServer:
    """The labeled test rows of one real server, mapped to the fleet's metrics."""

    group: str
    name: str
    values: np.ndarray  # (rows, FLEET_METRICS) float64
    labels: np.ndarray  # (rows,) int8


@dataclass(frozen=True)
class FleetPlan:
    """The source rows each component replays.

    Attributes
    ----------
    servers : tuple of SourceServer
    server_index : numpy.ndarray
        (components,) index into ``servers``.
    offsets : numpy.ndarray
        (components,) first source row of each component.
    """

    servers: tuple[SourceServer, ...]
    server_index: np.ndarray
    offsets: np.ndarray

    def source_rows(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (server, row) index arrays of shape (components, steps)."""
        lengths = np.array([len(server.labels) for server in self.servers])
        steps_range = np.arange(steps)
        rows = (self.offsets[:, None] + steps_range[None, :]) % lengths[self.server_index][:, None]
        return np.broadcast_to(self.server_index[:, None], rows.shape), rows


def _read_server(group: str, values_path: Path, label_path: Path) -> SourceServer:
    frame = pd.read_csv(values_path, header=None, dtype=np.float64)
    width = SMD_WIDTH if group == "smd" else ASD_WIDTH
    if frame.shape[1] != width:
        raise ValueError(
            f"{values_path}: expected {width} comma-separated columns per row for {group}, "
            f"got {frame.shape[1]}"
        )
    if not label_path.is_file():
        raise ValueError(f"{values_path}: its label file {label_path} is missing")
    labels = pd.read_csv(label_path, header=None).iloc[:, 0].to_numpy()
    if len(labels) != len(frame) or not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f"{label_path}: expected one 0/1 label per row of {values_path} "
            f"({len(frame)} rows), got {len(labels)} values"
        )
    raw = frame.to_numpy()
    if group == "smd":
        values = raw[:, SMD_COLUMNS]
    else:
        values = np.column_stack([raw, raw.mean(axis=1)])
    name = values_path.name.removesuffix(".gz").removesuffix(".txt")
    return SourceServer(group, name, np.ascontiguousarray(values), labels.astype(np.int8))


@functools.cache
def _load_servers_cached(data_dir: Path) -> tuple[SourceServer, ...]:
    servers = []
    for group in ("smd", "asd"):
        test_dir = data_dir / group / "test"
        for path in sorted(test_dir.glob("*.txt*")):
            label = data_dir / group / "test_label" / path.name.removesuffix(".gz")
            servers.append(_read_server(group, path, label))
    if not servers:
        raise ValueError(
            f"{data_dir}: no source servers found; expected smd/test/*.txt.gz or "
            "asd/test/*.txt.gz with labels in the matching test_label/ folder"
        )
    logger.info(
        "fleet: %d source servers from %s (%d smd, %d asd)",
        len(servers),
        data_dir,
        sum(server.group == "smd" for server in servers),
        sum(server.group == "asd" for server in servers),
    )
    return tuple(servers)


def load_servers(data_dir: Path) -> tuple[SourceServer, ...]:
    """Return the labeled SMD and ASD test servers under ``data_dir``, SMD first.

    Raises
    ------
    ValueError
        If no server is found, a file has the wrong number of columns, or a label file
        is missing or does not hold one 0/1 label per row.
    """
    return _load_servers_cached(Path(data_dir).resolve())


def plan_fleet(components: int, data_dir: Path, seed: int = 0) -> FleetPlan:
    """Assign servers in turn and a random start row to each of ``components``."""
    if components < 1:
        raise ValueError(f"components: expected a positive number, got {components!r}")
    servers = load_servers(data_dir)
    server_index = np.arange(components) % len(servers)
    lengths = np.array([len(server.labels) for server in servers])
    rng = np.random.default_rng([seed, 0])
    offsets = rng.integers(0, lengths[server_index])
    return FleetPlan(servers, server_index, offsets)


def _stacked(servers: tuple[SourceServer, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return all servers' values and labels stacked, and each server's first row."""
    starts = np.cumsum([0, *(len(server.labels) for server in servers[:-1])])
    values = np.concatenate([server.values for server in servers])
    labels = np.concatenate([server.labels for server in servers])
    return values, labels, starts


def _perturbed(source: np.ndarray, columns: list[int], seed: int, noise_stream: int) -> np.ndarray:
    """Scale and noise ``source`` (components, steps, len(columns)) in place.

    The scale of a component and metric is the same whichever metrics are replayed;
    ``noise_stream`` picks the random stream of the noise.
    """
    scale = np.random.default_rng([seed, 1]).normal(
        0.0, SCALE_SD, (source.shape[0], 1, FLEET_METRICS)
    )[:, :, columns]
    source *= 1.0 + np.clip(scale, -SCALE_LIMIT, SCALE_LIMIT)
    noise_rng = np.random.default_rng([seed, noise_stream])
    noise = noise_rng.standard_normal(source.shape, dtype=np.float32)
    noise *= NOISE_SD
    # The float32 nearest NOISE_LIMIT is above it; clip to the one just below instead.
    limit = np.nextafter(np.float32(NOISE_LIMIT), np.float32(0))
    np.clip(noise, -limit, limit, out=noise)
    source += noise
    return source


def _replay(
    components: int, steps: int, data_dir: Path, seed: int, columns: list[int], noise_stream: int
) -> tuple[FleetPlan, np.ndarray, np.ndarray]:
    """Return the plan, the perturbed values (components, steps, columns) and labels."""
    if steps < 1:
        raise ValueError(f"steps: expected a positive number, got {steps!r}")
    plan = plan_fleet(components, data_dir, seed)
    values, labels, starts = _stacked(plan.servers)
    server, row = plan.source_rows(steps)
    flat = starts[server] + row
    replayed = values[:, columns][flat]
    return plan, _perturbed(replayed, columns, seed, noise_stream), labels[flat]


def _utc_grid(start: str, steps: int, step_seconds: int) -> np.ndarray:
    first = pd.Timestamp(start)
    if first.tzinfo is None:
        raise ValueError(
            f"start: expected a UTC time such as '2026-01-05T00:00:00Z', got {start!r}"
        )
    first_ns = first.tz_convert("UTC").as_unit("ns").value
    return first_ns + np.arange(steps, dtype=np.int64) * step_seconds * 1_000_000_000


def _utc_column(nanoseconds: np.ndarray) -> pd.arrays.DatetimeArray:
    return pd.arrays.DatetimeArray._from_sequence(
        nanoseconds.view("M8[ns]"), dtype=pd.DatetimeTZDtype("ns", "UTC")
    )


def _repeated_codes(count: int, repeat: int) -> np.ndarray:
    """Return the categorical codes 0 .. count - 1, each repeated ``repeat`` times."""
    dtype = np.int16 if count < 2**15 else np.int32
    return np.repeat(np.arange(count, dtype=dtype), repeat)


def generate_fleet(
    components: int,
    *,
    steps: int,
    data_dir: Path,
    metrics: int = FLEET_METRICS,
    step_seconds: int = 300,
    start: str = "2026-01-05T00:00:00Z",
    seed: int = 0,
) -> FleetData:
    """Generate ``components`` x ``metrics`` series of ``steps`` grid points.

    Parameters
    ----------
    components : int
        Number of components, named ``gpu-node-00000`` onwards.
    steps : int
        Grid points per component.
    data_dir : pathlib.Path
        Folder with ``smd/`` and or ``asd/`` in the data sets' own layout.
    metrics : int, default=20
        The first ``metrics`` of ``m00`` .. ``m19``.
    step_seconds : int, default=300
    start : str, default="2026-01-05T00:00:00Z"
        First grid time; must carry a zone.
    seed : int, default=0
        The same seed gives the same fleet.

    Returns
    -------
    FleetData

    Raises
    ------
    ValueError
        On a non-positive count, a naive ``start``, or unreadable source data.
    """
    if not 1 <= metrics <= FLEET_METRICS:
        raise ValueError(f"metrics: expected 1 to {FLEET_METRICS}, got {metrics!r}")
    plan, values, labels = _replay(
        components, steps, data_dir, seed, list(range(metrics)), NOISE_STREAM_FLEET
    )
    names = [component_name(index) for index in range(components)]
    times = _utc_grid(start, steps, step_seconds)
    component_dtype = pd.CategoricalDtype(names)

    rows = pd.DataFrame(
        {
            "timestamp": _utc_column(
                np.broadcast_to(times[None, :, None], values.shape).reshape(-1)
            ),
            "component": pd.Categorical.from_codes(
                _repeated_codes(components, steps * metrics), dtype=component_dtype
            ),
            "metric": pd.Categorical.from_codes(
                np.tile(np.arange(metrics, dtype=np.int8), components * steps),
                categories=metric_names(metrics),
            ),
            "value": values.reshape(-1),
        },
        copy=False,
    )
    label_frame = pd.DataFrame(
        {
            "component": pd.Categorical.from_codes(
                _repeated_codes(components, steps), dtype=component_dtype
            ),
            "timestamp": _utc_column(np.broadcast_to(times, labels.shape).reshape(-1)),
            "label": labels.reshape(-1),
        },
        copy=False,
    )
    groups = {
        name: plan.servers[server].group
        for name, server in zip(names, plan.server_index.tolist(), strict=True)
    }
    logger.info(
        "fleet: %d components x %d metrics x %d steps, %d rows, %d labeled anomalous steps",
        components,
        metrics,
        steps,
        len(rows),
        int(labels.sum()),
    )
    return FleetData(rows=rows, labels=label_frame, groups=groups, step_seconds=step_seconds)


def fleet_series(components: int, *, steps: int, data_dir: Path, seed: int = 0) -> np.ndarray:
    """Return one real metric per component, (components, steps) float64.

    The series are :data:`SERIES_METRIC` of the components :func:`generate_fleet` makes
    with the same ``seed``: the same servers, start rows and scale, with noise of its own
    random stream (so a long series costs no noise for the other metrics).
    """
    column = metric_names().index(SERIES_METRIC)
    _, values, _ = _replay(components, steps, data_dir, seed, [column], NOISE_STREAM_SERIES)
    return np.ascontiguousarray(values[:, :, 0])


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"model: expected finite numbers, got {value!r}")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise ValueError(f"model: expected str, number, bool or list values, got {value!r}")


def fleet_threshold(fleet: FleetData) -> float:
    """Return the ``above`` threshold of :data:`SERIES_METRIC`: a high quantile of it."""
    values = fleet.rows["value"].to_numpy()[fleet.rows["metric"].to_numpy() == SERIES_METRIC]
    return round(float(np.quantile(values, THRESHOLD_QUANTILE)), 4)


def write_fleet_config(
    path: Path, fleet: FleetData, *, thresholds: bool = True, model: dict | None = None
) -> Path:
    """Write a ``predictor.toml`` declaring the fleet's components and groups.

    Parameters
    ----------
    path : pathlib.Path
        File to write; its folder is created.
    fleet : FleetData
    thresholds : bool, default=True
        Add one fleet-wide ``above`` threshold on :data:`SERIES_METRIC` at its
        :data:`THRESHOLD_QUANTILE` quantile over the fleet.
    model : dict or None, default=None
        Keys written verbatim into ``[model]`` (``step_seconds`` is set to the fleet's
        step unless given).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    model_table = {"step_seconds": fleet.step_seconds, **(model or {})}
    lines = ["# Generated benchmark fleet: replayed SMD and ASD servers.", "", "[model]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in model_table.items()]
    for name, group in fleet.groups.items():
        lines += ["", "[[components]]", f'name = "{name}"', f'group = "{group}"']
    if thresholds:
        lines += [
            "",
            f"# The {THRESHOLD_QUANTILE:.0%} quantile of {SERIES_METRIC} over the fleet.",
            "[[thresholds]]",
            f'metric = "{SERIES_METRIC}"',
            f"value = {fleet_threshold(fleet)!r}",
            'direction = "above"',
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
