"""``Series.dt`` in the row layout: calendar fields of naive ``datetime64`` arrays, computed
with NumPy's calendar casts. As pandas: ``int32`` fields, ``float64`` with NaN when any value
is NaT."""

from __future__ import annotations

import numpy as np

from dripml.frame.series import RowAccessor, RowSeries, accessor


@accessor("dt")
class DateMethods(RowAccessor):
    """``series.dt`` of a datetime :class:`RowSeries`."""

    __slots__ = ()

    def _field(self, values: np.ndarray) -> RowSeries:
        missing = np.isnat(self._series.values)  # NaT gave garbage (and warnings) in values
        if missing.any():
            return RowSeries(np.where(missing, np.nan, values.astype(np.float64)))
        return RowSeries(values.astype(np.int32))

    def _days(self) -> np.ndarray:
        """Days since 1970-01-01 (floored, so right for dates before it too)."""
        return self._series.values.astype("datetime64[D]").astype(np.int64)

    @property
    def year(self) -> RowSeries:
        return self._field(self._series.values.astype("datetime64[Y]").astype(np.int64) + 1970)

    @property
    def month(self) -> RowSeries:
        months = self._series.values.astype("datetime64[M]").astype(np.int64)
        return self._field(months % 12 + 1)

    @property
    def day(self) -> RowSeries:
        values = self._series.values
        first = values.astype("datetime64[M]").astype("datetime64[D]")
        return self._field((values.astype("datetime64[D]") - first).astype(np.int64) + 1)

    @property
    def dayofweek(self) -> RowSeries:
        return self._field((self._days() + 3) % 7)  # 1970-01-01 was a Thursday; Monday=0

    weekday = dayofweek
    day_of_week = dayofweek

    @property
    def hour(self) -> RowSeries:
        values = self._series.values
        with np.errstate(all="ignore"):
            hours = (values - values.astype("datetime64[D]")) // np.timedelta64(1, "h")
        return self._field(hours)

    @property
    def minute(self) -> RowSeries:
        values = self._series.values
        with np.errstate(all="ignore"):
            minutes = (values - values.astype("datetime64[h]")) // np.timedelta64(1, "m")
        return self._field(minutes)
