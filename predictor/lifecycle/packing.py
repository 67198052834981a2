"""Column-wise storage of many objects of one class inside a fleet model file.

skops describes every object, list and string of a file as its own node, so a fleet of
10,000 component models, each with its metric names, times and forecaster, becomes
millions of nodes that take minutes to write and load. A group's component models are
alike: the same attributes, mostly of the same types. :func:`pack_objects` stores one
column per attribute instead (numbers, strings and times as one array, equal values
once, equal-shaped arrays stacked), and :func:`unpack_objects` rebuilds the objects.

Only the classes in :data:`PACKABLE_CLASSES` are ever rebuilt, so a packed file cannot
name another class to construct.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from predictor.forecast.exponential import DegradationForecaster
from predictor.model import ComponentModel

#: The classes a packed file may hold, by their import path.
PACKABLE_CLASSES: dict[str, type] = {
    "predictor.model.ComponentModel": ComponentModel,
    "predictor.forecast.exponential.DegradationForecaster": DegradationForecaster,
}


@dataclass
class PackedColumn:
    """One attribute of every packed object.

    ``kind`` is how ``values`` stores them: ``"same"`` (one value for all), ``"array"``
    (an array with one entry, or one stacked row, per object), ``"timestamp"`` and
    ``"timedelta"`` (int64 nanoseconds), ``"series"`` (concatenated values and index with
    the length of each), or ``"list"`` (the values as they are). ``missing`` marks the
    objects whose value is None, when some are.
    """

    kind: str
    values: Any
    missing: np.ndarray | None = None
    lengths: np.ndarray | None = None
    index: np.ndarray | None = None
    tz: str | None = None
    unit: str | None = None
    freq: str | None = None


@dataclass
class PackedObjects:
    """Objects of one class, one :class:`PackedColumn` per attribute."""

    class_path: str
    count: int
    columns: dict[str, PackedColumn] = field(default_factory=dict)


def pack_objects(objects: list[Any], exclude: tuple[str, ...] = ()) -> PackedObjects:
    """Pack objects of one class from :data:`PACKABLE_CLASSES`, leaving out ``exclude``.

    Raises
    ------
    TypeError
        If the objects are not all of one packable class.
    """
    classes = {type(item) for item in objects}
    if len(classes) != 1:
        raise TypeError(
            f"pack_objects: expected objects of one class, got {sorted(map(str, classes))}"
        )
    cls = classes.pop()
    class_path = f"{cls.__module__}.{cls.__qualname__}"
    if PACKABLE_CLASSES.get(class_path) is not cls:
        raise TypeError(f"pack_objects: {class_path} is not in PACKABLE_CLASSES")
    names = [name for name in vars(objects[0]) if name not in exclude]
    packed = PackedObjects(class_path, len(objects))
    for name in names:
        packed.columns[name] = _pack_column([vars(item).get(name) for item in objects])
    return packed


def unpack_objects(packed: PackedObjects) -> list[Any]:
    """Rebuild the objects of :func:`pack_objects` (without the excluded attributes)."""
    cls = PACKABLE_CLASSES.get(packed.class_path)
    if cls is None:
        raise TypeError(f"unpack_objects: {packed.class_path} is not in PACKABLE_CLASSES")
    columns = {
        name: _unpack_column(column, packed.count) for name, column in packed.columns.items()
    }
    objects = []
    for position in range(packed.count):
        item = cls.__new__(cls)
        item.__dict__.update({name: values[position] for name, values in columns.items()})
        objects.append(item)
    return objects


def _pack_column(values: list[Any]) -> PackedColumn:
    present = [value for value in values if value is not None]
    missing = np.array([value is None for value in values])
    if _all_equal(values):
        return PackedColumn("same", values[0])
    if present and len(present) == len(values) and _all_arrays_alike(present):
        return PackedColumn("array", np.stack(present))
    if present and all(isinstance(value, pd.Timestamp) for value in present):
        zones = {str(value.tz) if value.tz else None for value in present}
        units = {value.unit for value in present}
        if len(zones) == 1 and len(units) == 1:
            stamps = np.array([value.value if value is not None else 0 for value in values])
            return PackedColumn(
                "timestamp", stamps, _mask(missing), tz=zones.pop(), unit=units.pop()
            )
    if present and all(isinstance(value, pd.Timedelta) for value in present):
        units = {value.unit for value in present}
        if len(units) == 1:
            spans = np.array([value.value if value is not None else 0 for value in values])
            return PackedColumn("timedelta", spans, _mask(missing), unit=units.pop())
    if present and len(present) == len(values) and _all_series_alike(present):
        first = present[0].index
        return PackedColumn(
            "series",
            np.concatenate([series.to_numpy(dtype="float64") for series in present]),
            lengths=np.array([len(series) for series in present]),
            index=np.concatenate([series.index.as_unit("ns").asi8 for series in present]),
            tz=str(first.tz) if first.tz else None,
            unit=first.unit,
            freq=first.freqstr,
        )
    for kind in (bool, int, float, str):
        if present and all(type(value) is kind for value in present):
            filler = {bool: False, int: 0, float: np.nan, str: ""}[kind]
            array = np.array([filler if value is None else value for value in values])
            return PackedColumn("array", array, _mask(missing))
    return PackedColumn("list", values)


def _unpack_column(column: PackedColumn, count: int) -> list[Any]:
    if column.kind == "same":
        return [column.values] * count
    if column.kind == "list":
        return list(column.values)
    if column.kind == "series":
        return _unpack_series(column)
    if column.kind == "timestamp":
        values = [
            pd.Timestamp(int(value), unit="ns", tz="UTC")
            .tz_convert(column.tz)
            .as_unit(column.unit)
            if column.tz
            else pd.Timestamp(int(value), unit="ns").as_unit(column.unit)
            for value in column.values
        ]
    elif column.kind == "timedelta":
        values = [
            pd.Timedelta(int(value), unit="ns").as_unit(column.unit) for value in column.values
        ]
    elif column.values.ndim > 1:
        values = list(column.values)
    else:
        values = column.values.tolist()
    if column.missing is not None:
        values = [
            None if absent else value for value, absent in zip(values, column.missing, strict=True)
        ]
    return values


def _unpack_series(column: PackedColumn) -> list[pd.Series]:
    bounds = np.concatenate([[0], np.cumsum(column.lengths)])
    result = []
    for low, high in pairwise(bounds):
        index = pd.DatetimeIndex(column.index[low:high].astype("datetime64[ns]"))
        if column.tz:
            index = index.tz_localize("UTC").tz_convert(column.tz)
        index = index.as_unit(column.unit)
        if column.freq:
            index.freq = column.freq
        result.append(pd.Series(column.values[low:high].copy(), index=index))
    return result


def _mask(missing: np.ndarray) -> np.ndarray | None:
    return missing if missing.any() else None


def _all_equal(values: list[Any]) -> bool:
    first = values[0]
    if not isinstance(first, str | int | float | bool | tuple | list | type(None)):
        return False
    if isinstance(first, float) and np.isnan(first):
        return all(isinstance(value, float) and np.isnan(value) for value in values)
    return all(type(value) is type(first) and value == first for value in values)


def _all_arrays_alike(values: list[Any]) -> bool:
    if not all(isinstance(value, np.ndarray) for value in values):
        return False
    first = values[0]
    return first.dtype.kind in "biuf" and all(
        value.shape == first.shape and value.dtype == first.dtype for value in values
    )


def _all_series_alike(values: list[Any]) -> bool:
    if not all(
        isinstance(value, pd.Series) and isinstance(value.index, pd.DatetimeIndex)
        for value in values
    ):
        return False
    first = values[0]
    return all(
        value.name is None
        and value.index.name is None
        and value.dtype == "float64"
        and str(value.index.tz) == str(first.index.tz)
        and value.index.unit == first.index.unit
        and value.index.freqstr == first.index.freqstr
        for value in values
    )
