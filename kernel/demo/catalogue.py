"""The demo model's stochastic event set and its 10,000-year occurrence (Poisson) file.

Each event is a landfalling tropical cyclone on the demo coast, described by its landfall
longitude, heading, maximum 1-minute sustained wind speed at landfall, radius of maximum
winds and inland decay length. Intensities are sampled by stratification: the range
18-80 m/s is cut into ``N_EVENTS`` equal strata, one event per stratum, and each event's
annual rate is the climatological rate of landfalls in its stratum,
``rate = lambda(v_lo) - lambda(v_hi)``, where ``lambda(v)`` (:data:`LANDFALL_RATES`) is the
annual rate of landfalls with a maximum wind of at least ``v``. Strong storms are thus as
well represented in the catalogue as weak ones (their rates are just smaller), which keeps
the 250- to 1000-year losses stable with a few hundred events.

The occurrence file places every event in each of the ``N_PERIODS`` years independently as a
Poisson process with the event's rate (``Poisson(rate x years)`` occurrences, each in a
uniformly drawn year), on a day of the hurricane season (June to November, peaking in
mid-September).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perilflow.kernel.model.data import date_to_date_id
from perilflow.kernel.model.dtypes import OCCURRENCE_DTYPE

__all__ = [
    "LANDFALL_RATES",
    "N_EVENTS",
    "N_PERIODS",
    "build_catalogue",
    "build_occurrence",
    "exceedance_rate",
]

#: Number of events in the catalogue.
N_EVENTS = 400
#: Number of simulated years (periods) in the occurrence file.
N_PERIODS = 10_000

#: (maximum 1-minute sustained wind at landfall, m/s; annual rate of landfalls at least that strong)
#: along the ~400 km of coast the catalogue covers; interpolated log-linearly. 18 m/s is a
#: tropical storm, 33 a category 1 hurricane, 50 a category 3, 70 a category 5.
LANDFALL_RATES = ((18.0, 0.9), (33.0, 0.3), (50.0, 0.08), (60.0, 0.025), (70.0, 0.006), (80.0, 0.0008))

#: Landfall longitudes span the grid plus a margin, so storms landing just outside still hit it.
LANDFALL_LON = (-92.2, -87.8)

_SEASON_PEAK_DAY = 253    # day of year of the season's peak (10 September)
_SEASON_SPREAD_DAYS = 28
_SEASON = (152, 334)      # 1 June .. 30 November (day of year, non-leap)
_MONTH_STARTS = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])  # day of year - 1 of each month's 1st


def exceedance_rate(v: np.ndarray | float) -> np.ndarray:
    """Annual rate of landfalls with maximum sustained wind >= ``v`` m/s (:data:`LANDFALL_RATES`)."""
    speeds, rates = np.array(LANDFALL_RATES).T
    return np.exp(np.interp(np.asarray(v, dtype=np.float64), speeds, np.log(rates)))


def build_catalogue(rng: np.random.Generator, n_events: int = N_EVENTS) -> pd.DataFrame:
    """Draw the event set.

    Parameters
    ----------
    rng : numpy.random.Generator
        The random stream (fixed seed for a reproducible model).
    n_events : int
        Number of events (one per intensity stratum).

    Returns
    -------
    pandas.DataFrame
        One row per event, sorted by ``event_id`` (1..n_events, assigned in random order so
        ids say nothing about intensity): ``event_id``, ``vmax_ms`` (landfall maximum sustained
        wind), ``landfall_lon``, ``heading_deg`` (direction of travel, degrees clockwise from
        north), ``rmax_km`` (radius of maximum winds), ``decay_km`` (inland e-folding distance
        of the maximum wind) and ``rate`` (annual rate).
    """
    v_lo, v_hi = LANDFALL_RATES[0][0], LANDFALL_RATES[-1][0]
    edges = np.linspace(v_lo, v_hi, n_events + 1)
    vmax = edges[:-1] + rng.uniform(size=n_events) * np.diff(edges)
    rate = exceedance_rate(edges[:-1]) - exceedance_rate(edges[1:])
    landfall_lon = rng.uniform(*LANDFALL_LON, size=n_events)
    heading = np.clip(rng.normal(0.0, 22.0, size=n_events), -60.0, 60.0)
    # stronger storms are more compact
    rmax_median = 50.0 - 0.3 * (vmax - v_lo)
    rmax = np.clip(rmax_median * np.exp(rng.normal(0.0, 0.25, size=n_events)), 12.0, 90.0)
    decay = rng.uniform(150.0, 350.0, size=n_events)
    event_id = rng.permutation(n_events) + 1
    frame = pd.DataFrame({"event_id": event_id.astype(np.int32), "vmax_ms": vmax, "landfall_lon": landfall_lon,
                          "heading_deg": heading, "rmax_km": rmax, "decay_km": decay, "rate": rate})
    return frame.sort_values("event_id", kind="stable").reset_index(drop=True)


def build_occurrence(rng: np.random.Generator, event_id: np.ndarray, rate: np.ndarray,
                     n_periods: int = N_PERIODS) -> np.ndarray:
    """Simulate ``n_periods`` years of occurrences.

    Parameters
    ----------
    rng : numpy.random.Generator
    event_id, rate : numpy.ndarray
        The catalogue's events and annual rates.
    n_periods : int
        Number of years; year ``k`` is period ``k``.

    Returns
    -------
    numpy.ndarray
        ``OCCURRENCE_DTYPE`` records (date ids of the civil-day algorithm, year = period_no),
        sorted by period, date and event.
    """
    counts = rng.poisson(np.asarray(rate) * n_periods)
    events = np.repeat(np.asarray(event_id, dtype=np.int32), counts)
    periods = rng.integers(1, n_periods + 1, size=events.shape[0])
    day = np.clip(np.rint(rng.normal(_SEASON_PEAK_DAY, _SEASON_SPREAD_DAYS, size=events.shape[0])), *_SEASON)
    day0 = day.astype(np.int64) - 1                       # 0-based day of a non-leap year
    month = np.searchsorted(_MONTH_STARTS, day0, side="right")  # 1..12
    day_of_month = day0 - _MONTH_STARTS[month - 1] + 1
    records = np.empty(events.shape[0], dtype=OCCURRENCE_DTYPE)
    records["event_id"] = events
    records["period_no"] = periods
    records["occ_date_id"] = date_to_date_id(periods, month, day_of_month)
    order = np.lexsort((records["event_id"], records["occ_date_id"], records["period_no"]))
    return records[order]
