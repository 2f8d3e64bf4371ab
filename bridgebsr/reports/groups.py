"""Rows sorted into groups (by pilot, partner, country, stage ...) for counts and order
statistics with numpy, and the tables by group that every view shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import copy
from typing import Any

import numpy as np
import pandas as pd

from bridgebsr.reports.frames import (
    BoolArray,
    FloatArray,
    Frames,
    IntArray,
)


def group_index(frames: Frames, dims: list[str]) -> pd.Index:
    """Every group of `dims` that has cases, sorted: the rows of a table by those dims."""
    return frames.derived(f"groups.{dims}", lambda: Grouping(group_keys(frames.cases, dims)).index)


def by_groups(
    frames: Frames, dims: list[str], table: pd.DataFrame, counts: Sequence[str]
) -> pd.DataFrame:
    """One row per group with cases; counts 0 where nothing was seen; group columns first."""
    out = table.reindex(group_index(frames, dims))
    for column in counts:
        out[column] = out[column].fillna(0).astype("int64")
    return out.reset_index()


class Grouping:
    """Rows sorted into groups by the values of some keys (in sorted order), for counts and
    order statistics with numpy: no per-group Python, no copy of the rows.

    Rows outside `rows`, or with a missing key, belong to no group. Labels are strings,
    except for integer keys.
    """

    def __init__(self, keys: Mapping[str, Any], rows: BoolArray | None = None) -> None:
        arrays = list(keys.values())
        n = len(arrays[0])
        keep = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool).copy()
        codes, labels = [], []
        for values in arrays:
            code, uniques = pd.factorize(values, sort=True)
            codes.append(np.asarray(code, dtype=np.int64))
            unique = np.asarray(uniques)
            labels.append(unique if unique.dtype.kind in "iu" else unique.astype(str))
            keep &= code >= 0
        sizes = tuple(max(len(u), 1) for u in labels)
        flat = np.ravel_multi_index(tuple(c[keep] for c in codes), sizes)
        total = int(np.prod(sizes))
        if total <= max(4 * n, 1 << 16):  # few possible groups: a lookup table, no sort
            seen = np.zeros(total, dtype=bool)
            seen[flat] = True
            unique_flat = np.flatnonzero(seen)
            lookup = np.full(total, -1, dtype=np.int64)
            lookup[unique_flat] = np.arange(len(unique_flat))
            inverse = lookup[flat]
        else:
            unique_flat, inverse = np.unique(flat, return_inverse=True)
        self.ids = np.full(n, -1, dtype=np.int64)
        self.ids[keep] = inverse
        self._member = keep
        self.size = len(unique_flat)
        parts = np.unravel_index(unique_flat, sizes)
        levels = [label[part] for label, part in zip(labels, parts, strict=True)]
        names = list(keys)
        self.index: pd.Index = (
            pd.MultiIndex.from_arrays(levels, names=names)
            if len(names) > 1
            else pd.Index(levels[0], name=names[0])
        )

    def at(self, positions: IntArray) -> Grouping:
        """The rows of another table, each in the group of the row at its position here (-1:
        in none): the same groups, in the same order."""
        out = copy(self)
        out.ids = np.where(positions >= 0, self.ids[np.maximum(positions, 0)], -1)
        out._member = out.ids >= 0
        return out

    def count(self, flags: Any = None) -> IntArray:
        """Rows per group (with the flag set, when given)."""
        rows = self._member if flags is None else self._member & np.asarray(flags, dtype=bool)
        return np.bincount(self.ids[rows], minlength=self.size).astype(np.int64)

    def total(self, values: Any) -> IntArray:
        """The sum of integer values per group."""
        numbers = np.asarray(values, dtype=np.int64)[self._member]
        sums = np.bincount(self.ids[self._member], weights=numbers, minlength=self.size)
        return sums.round().astype(np.int64)

    def stats(self, values: Any, name: str, how: Sequence[str]) -> dict[str, FloatArray]:
        """`median`, `p90`, `mean`, `min` or `max` of the values per group (missing values
        left out; NaN where a group has none). Quantiles interpolate linearly."""
        numbers = np.asarray(values, dtype=np.float64)
        measured = (self.ids >= 0) & ~np.isnan(numbers)
        ids, numbers = _sorted_in_groups(self.ids[measured], numbers[measured], self.size)
        n = np.bincount(ids, minlength=self.size)
        start = np.cumsum(n) - n
        has = n > 0
        out: dict[str, FloatArray] = {}
        for stat in how:
            result = np.full(self.size, np.nan)
            if stat in ("median", "p90"):
                position = start + (0.5 if stat == "median" else 0.9) * (n - 1)
                low = np.floor(position).astype(np.int64)
                high = np.ceil(position).astype(np.int64)
                low, high = low[has], high[has]
                fraction = position[has] - low
                result[has] = numbers[low] + fraction * (numbers[high] - numbers[low])
            elif stat == "mean":
                sums = np.bincount(ids, weights=numbers, minlength=self.size)
                result[has] = sums[has] / n[has]
            elif stat == "min":
                result[has] = numbers[start[has]]
            elif stat == "max":
                result[has] = numbers[start[has] + n[has] - 1]
            else:
                raise ValueError(f"unknown statistic {stat}")
            out[f"{stat}_{name}"] = result
        return out

    def table(self, columns: Mapping[str, Any]) -> pd.DataFrame:
        """A table of per-group columns, indexed by the group labels."""
        return pd.DataFrame(dict(columns), index=self.index)


def _sorted_in_groups(
    ids: IntArray, numbers: FloatArray, groups: int
) -> tuple[IntArray, FloatArray]:
    """The values sorted by group, then by value. Whole numbers in a short range (days,
    counts) are counted rather than compared: a histogram per group, read off in order."""
    if len(numbers) and np.abs(numbers).max() < 2**53:
        whole = numbers.astype(np.int64)
        low, high = int(whole.min()), int(whole.max())
        span = high - low + 1
        if span * groups <= max(4 * len(numbers), 1 << 16) and np.array_equal(whole, numbers):
            counts = np.bincount(ids * span + (whole - low), minlength=span * groups)
            values = np.tile(np.arange(low, high + 1, dtype=np.float64), groups)
            labels = np.repeat(np.arange(groups, dtype=np.int64), span)
            return np.repeat(labels, counts), np.repeat(values, counts)
    order = np.lexsort((numbers, ids))
    return ids[order], numbers[order]


def group_keys(frame: pd.DataFrame, dims: Sequence[str]) -> dict[str, Any]:
    return {d: frame[d].array for d in dims}
