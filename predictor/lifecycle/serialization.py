"""Save and load fitted fleet models in the skops format, without pickle.

A skops file stores each object as its type name and its attributes. Loading rebuilds
only types that skops trusts by default (builtins, numpy, most of scikit-learn) or that
:data:`TRUSTED_TYPES` lists. A file that contains any other type is rejected with
:class:`~predictor.exceptions.UntrustedModelError`, which names the type, so a model
file from an untrusted place cannot run code on load.

skops cannot store pandas objects, so the few that a fitted model holds (training
start and end times, the grid step of a forecaster, a forecaster's fitted values) are
written as :class:`EncodedTimestamp`, :class:`EncodedTimedelta` and
:class:`EncodedSeries` and turned back into the same pandas objects on load.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.exceptions import UntrustedModelError
from predictor.lifecycle.packing import PackedObjects, pack_objects, unpack_objects
from predictor.model import ComponentModel, FleetModel

logger = logging.getLogger(__name__)

#: Types beyond skops' defaults that a fleet model file may hold: the project's own
#: model classes, the PyOD detectors the ensemble can build, and the scikit-learn
#: estimators inside them. Everything else is refused on load.
TRUSTED_TYPES: tuple[str, ...] = (
    "predictor.model.FleetModel",
    "predictor.model.ComponentModel",
    "predictor.detect.ensemble.AnomalyEnsemble",
    "predictor.detect.statistical.RobustZScore",
    "predictor.detect._tail.TailProbability",
    "predictor.detect._members.RowwiseECOD",
    "predictor.detect._members.RowwiseCOPOD",
    "predictor.detect._members.VaryingColumnsPCA",
    "predictor.detect._members.LogCompressedKNN",
    "predictor.forecast.exponential.DegradationForecaster",
    "predictor.lifecycle.serialization.EncodedTimestamp",
    "predictor.lifecycle.serialization.EncodedTimedelta",
    "predictor.lifecycle.serialization.EncodedSeries",
    "predictor.lifecycle.serialization.PackedGroup",
    "predictor.lifecycle.packing.PackedObjects",
    "predictor.lifecycle.packing.PackedColumn",
    "pyod.models.iforest.IForest",
    "pyod.models.knn.KNN",
    "pyod.models.lof.LOF",
    "pyod.models.abod.ABOD",
    "pyod.models.hbos.HBOS",
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.neighbors._unsupervised.NearestNeighbors",
    "sklearn.neighbors._lof.LocalOutlierFactor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.decomposition._pca.PCA",
    "sklearn.preprocessing._data.StandardScaler",
)

_OWN_MODULE_PREFIX = "predictor."


@dataclass
class EncodedTimestamp:
    """A :class:`pandas.Timestamp` as nanoseconds since the epoch, its zone and unit."""

    nanoseconds: int
    tz: str | None
    unit: str

    def decode(self) -> pd.Timestamp:
        """Return the timestamp this was encoded from."""
        stamp = pd.Timestamp(self.nanoseconds, unit="ns", tz="UTC")
        stamp = stamp.tz_convert(self.tz) if self.tz else stamp.tz_localize(None)
        return stamp.as_unit(self.unit)


@dataclass
class EncodedTimedelta:
    """A :class:`pandas.Timedelta` as nanoseconds and its unit."""

    nanoseconds: int
    unit: str

    def decode(self) -> pd.Timedelta:
        """Return the timedelta this was encoded from."""
        return pd.Timedelta(self.nanoseconds, unit="ns").as_unit(self.unit)


@dataclass
class EncodedSeries:
    """A :class:`pandas.Series` on a :class:`pandas.DatetimeIndex`, as numpy arrays."""

    values: np.ndarray
    index_nanoseconds: np.ndarray
    index_tz: str | None
    index_unit: str
    index_freq: str | None
    index_name: str | None
    name: str | None

    def decode(self) -> pd.Series:
        """Return the series this was encoded from."""
        index = pd.DatetimeIndex(self.index_nanoseconds.astype("datetime64[ns]"))
        if self.index_tz:
            index = index.tz_localize("UTC").tz_convert(self.index_tz)
        index = index.as_unit(self.index_unit)
        if self.index_freq:
            index.freq = self.index_freq
        index.name = self.index_name
        return pd.Series(self.values, index=index, name=self.name)


@dataclass
class PackedGroup:
    """The component models that share one ensemble, stored column-wise.

    skops writes an object's full description each time it is reached, and a node
    per string and list, so a group of thousands of components would repeat its
    ensemble and its metric names per component. The file contains each shared ensemble
    once, in the fleet's ``shared_ensembles`` list, and the group's component models
    and forecasters as columns (see :mod:`predictor.lifecycle.packing`).

    Attributes
    ----------
    position : int
        The group's ensemble in ``shared_ensembles``.
    models : PackedObjects
        The component models without their ensemble and forecasters.
    forecasters : dict of str to tuple
        Per forecast metric: the positions of the models that have a forecaster for
        it, and those forecasters.
    """

    position: int
    models: PackedObjects
    forecasters: dict[str, tuple[np.ndarray, PackedObjects]]


def _share_ensembles(fleet: FleetModel) -> FleetModel:
    """Return a copy of ``fleet`` whose group-shared models are packed per group."""
    groups: dict[int, list[ComponentModel]] = {}
    for model in fleet.components.values():
        if model.shares_ensemble:
            groups.setdefault(id(model.ensemble), []).append(model)
    if not groups:
        return fleet
    clone = copy.copy(fleet)
    clone.components = {
        name: model for name, model in fleet.components.items() if not model.shares_ensemble
    }
    clone.shared_ensembles = [models[0].ensemble for models in groups.values()]
    clone.packed_groups = [
        _pack_group(position, models) for position, models in enumerate(groups.values())
    ]
    clone.component_order = np.array(list(fleet.components), dtype=str)
    return clone


def _pack_group(position: int, models: list[ComponentModel]) -> PackedGroup:
    metrics = sorted({metric for model in models for metric in model.forecasters})
    forecasters = {}
    for metric in metrics:
        owners = np.array([row for row, model in enumerate(models) if metric in model.forecasters])
        forecasters[metric] = (
            owners,
            pack_objects([models[row].forecasters[metric] for row in owners]),
        )
    packed = pack_objects(models, exclude=("ensemble", "forecasters"))
    return PackedGroup(position, packed, forecasters)


def _link_shared_ensembles(fleet: FleetModel) -> FleetModel:
    """Rebuild the packed component models of a loaded fleet around their ensembles."""
    state = vars(fleet)
    shared = state.pop("shared_ensembles", None)
    packed_groups = state.pop("packed_groups", None)
    order = state.pop("component_order", None)
    if shared is None or packed_groups is None:
        return fleet
    rebuilt = dict(fleet.components)
    for group in packed_groups:
        models = unpack_objects(group.models)
        for model in models:
            model.ensemble = shared[group.position]
            model.forecasters = {}
        for metric, (owners, packed) in group.forecasters.items():
            for row, forecaster in zip(owners, unpack_objects(packed), strict=True):
                models[row].forecasters[metric] = forecaster
        rebuilt.update((model.component, model) for model in models)
    names = list(order) if order is not None else sorted(rebuilt)
    fleet.components = {str(name): rebuilt[str(name)] for name in names}
    return fleet


def _encode(value: Any, where: str, clones: dict[int, Any] | None = None) -> Any:
    """Return ``value`` with its pandas objects replaced by encoded ones.

    The project's own objects are copied shallowly, so the fitted model passed in is
    not changed. An object reached twice (a group's shared ensemble) is copied once,
    so skops stores it once and loads it as one object. Other objects (numpy,
    scikit-learn, PyOD) are returned as they are.
    """
    clones = {} if clones is None else clones
    if isinstance(value, pd.Timestamp):
        return EncodedTimestamp(int(value.value), str(value.tz) if value.tz else None, value.unit)
    if isinstance(value, pd.Timedelta):
        return EncodedTimedelta(int(value.value), value.unit)
    if isinstance(value, pd.Series):
        return _encode_series(value, where)
    if isinstance(value, pd.DataFrame | pd.Index):
        raise TypeError(
            f"{where}: a {type(value).__name__} cannot be saved in a model file; "
            "store it as numpy arrays"
        )
    if isinstance(value, dict):
        return {key: _encode(item, f"{where}[{key!r}]", clones) for key, item in value.items()}
    if isinstance(value, list):
        return [_encode(item, f"{where}[{i}]", clones) for i, item in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_encode(item, f"{where}[{i}]", clones) for i, item in enumerate(value))
    if type(value).__module__.startswith(_OWN_MODULE_PREFIX) and hasattr(value, "__dict__"):
        if id(value) in clones:
            return clones[id(value)]
        clone = copy.copy(value)
        clones[id(value)] = clone
        for name, item in vars(value).items():
            setattr(clone, name, _encode(item, f"{where}.{name}", clones))
        return clone
    return value


def _encode_series(series: pd.Series, where: str) -> EncodedSeries:
    index = series.index
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(
            f"{where}: only a Series on a DatetimeIndex can be saved in a model file, "
            f"got an index of type {type(index).__name__}"
        )
    return EncodedSeries(
        values=series.to_numpy(copy=True),
        index_nanoseconds=index.as_unit("ns").asi8.copy(),
        index_tz=str(index.tz) if index.tz else None,
        index_unit=index.unit,
        index_freq=index.freqstr,
        index_name=None if index.name is None else str(index.name),
        name=None if series.name is None else str(series.name),
    )


def _decode(value: Any) -> Any:
    """Turn the encoded pandas objects inside a loaded model back into pandas objects."""
    if isinstance(value, EncodedTimestamp | EncodedTimedelta | EncodedSeries):
        return value.decode()
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_decode(item) for item in value)
    if type(value).__module__.startswith(_OWN_MODULE_PREFIX) and hasattr(value, "__dict__"):
        for name, item in vars(value).items():
            setattr(value, name, _decode(item))
    return value


def save_fleet(fleet: FleetModel, path: str | Path) -> Path:
    """Write ``fleet`` to ``path`` in the skops format.

    Parameters
    ----------
    fleet : FleetModel
    path : str or Path
        The file to write; its folder must exist.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    TypeError
        If the model contains a pandas object other than a Timestamp, a Timedelta or a
        Series on a DatetimeIndex; the message names the attribute.
    """
    import skops.io as sio

    path = Path(path)
    sio.dump(_encode(_share_ensembles(fleet), "fleet"), path)
    logger.debug("serialization: wrote %d components to %s", len(fleet.components), path)
    return path


def untrusted_types(path: str | Path) -> list[str]:
    """Return the types in a skops file that neither skops nor the project trusts."""
    import skops.io as sio

    found = sio.get_untrusted_types(file=Path(path))
    return sorted(name for name in found if name not in TRUSTED_TYPES)


def load_fleet(path: str | Path) -> FleetModel:
    """Load a fleet model written by :func:`save_fleet`.

    Raises
    ------
    UntrustedModelError
        If the file contains a type outside skops' defaults and :data:`TRUSTED_TYPES`.
    FileNotFoundError
        If ``path`` does not exist.
    """
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    path = Path(path)
    # skops checks every type against its defaults and the trusted list while it builds
    # the object tree, so the file is parsed once. Listing the types first parsed it
    # three times.
    try:
        loaded = sio.load(path, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException:
        untrusted = untrusted_types(path)
        raise UntrustedModelError(
            f"{path}: refusing to load untrusted types {untrusted}; a fleet model file may "
            "hold only skops' default types and predictor.lifecycle.serialization.TRUSTED_TYPES"
        ) from None
    fleet = _decode(loaded)
    if not isinstance(fleet, FleetModel):
        raise UntrustedModelError(
            f"{path}: expected a FleetModel, the file contains a {type(fleet).__name__}"
        )
    return _link_shared_ensembles(fleet)
