"""The demo model's hazard: a grid of areaperils on a stylised coast and each storm's wind footprint.

Geography
    A 2 x 2 degree box (29-31 N, 91-89 W) cut into 0.1 degree cells: 20 x 20 = 400 areaperils,
    numbered as oasislmf's ``fixed_size_geo_grid`` lookup numbers them (``id = lon_index x 20 +
    lat_index + 1``), so the model's lookup needs no areaperil file. The sea lies to the south
    of a wavy coastline (:func:`coast_lat`) near 29.3 N.

Wind field
    Intensity is the maximum 3-second gust at 10 m (m/s) over the storm's passage. At a cell
    whose closest distance to the (straight) track is ``r`` and which the storm passes ``s`` km
    after landfall::

        V(s) = vmax x exp(-max(s, 0) / decay_km)                 inland filling
        g(r) = 1 for r <= rmax, else (rmax / r) ** 0.6           radial profile
        a    = 1 + 0.12 x clip(lateral / (2 rmax), -1, 1)        right-of-track side is stronger
        gust = 1.25 x V(s) x g(r) x a

Intensity uncertainty
    The gust at a cell is lognormal around that value (sigma 0.1), discretised over the
    intensity bins (:data:`INTENSITY_EDGES`: 5 m/s wide from 20 m/s, the last open-ended; bin 1 is
    below 20 m/s). Bins with less than 1e-3 probability are dropped and the rest renormalised.
    Cells whose central gust is below 25 m/s (no damage function starts below 30 m/s) are
    left out of the footprint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from perilflow.kernel.model.dtypes import AREAPERIL_INT, FOOTPRINT_CSV_DTYPE

__all__ = [
    "GRID",
    "INTENSITY_EDGES",
    "N_INTENSITY_BINS",
    "areaperil_cells",
    "build_footprint",
    "coast_lat",
    "event_gusts",
    "intensity_bin_dict",
    "normalise_probabilities",
]

#: The lookup's ``fixed_size_geo_grid`` parameters (degrees).
GRID = {"lat_min": 29.0, "lat_max": 31.0, "lon_min": -91.0, "lon_max": -89.0, "arc_size": 0.1}
N_LAT = round((GRID["lat_max"] - GRID["lat_min"]) / GRID["arc_size"])
N_LON = round((GRID["lon_max"] - GRID["lon_min"]) / GRID["arc_size"])

#: Intensity bin edges (gust, m/s): bin k covers [edges[k-1], edges[k]); the last bin also takes everything above.
INTENSITY_EDGES = np.concatenate(([0.0], np.arange(20.0, 100.0 + 1e-9, 5.0)))
N_INTENSITY_BINS = len(INTENSITY_EDGES) - 1

_KM_PER_DEG_LAT = 110.57
_KM_PER_DEG_LON = 111.32 * np.cos(np.deg2rad(30.0))
_GUST_FACTOR = 1.25
_PROFILE_EXPONENT = 0.6
_ASYMMETRY = 0.12
_SIGMA = 0.10
_MIN_BIN_PROBABILITY = 1e-3
_MIN_GUST = 25.0


def coast_lat(lon: np.ndarray | float) -> np.ndarray:
    """Latitude of the coastline at longitude ``lon`` (land to the north)."""
    x = np.asarray(lon, dtype=np.float64) + 91.0
    return 29.32 + 0.08 * np.sin(2 * np.pi * x / 1.3) + 0.04 * np.cos(2 * np.pi * x / 0.55)


def areaperil_cells() -> pd.DataFrame:
    """Every areaperil of the grid: ``areaperil_id``, ``lat`` / ``lon`` (cell centre), ``lat_index``, ``lon_index``."""
    lon_index, lat_index = np.meshgrid(np.arange(N_LON), np.arange(N_LAT), indexing="ij")
    lon_index, lat_index = lon_index.ravel(), lat_index.ravel()
    frame = pd.DataFrame({
        "areaperil_id": (lon_index * N_LAT + lat_index + 1).astype(np.int64),
        "lat": GRID["lat_min"] + (lat_index + 0.5) * GRID["arc_size"],
        "lon": GRID["lon_min"] + (lon_index + 0.5) * GRID["arc_size"],
        "lat_index": lat_index,
        "lon_index": lon_index,
    })
    return frame.sort_values("areaperil_id", kind="stable").reset_index(drop=True)


def intensity_bin_dict() -> pd.DataFrame:
    """The intensity bins as a table (``bin_index, bin_from, bin_to, interpolation``, m/s)."""
    lo, hi = INTENSITY_EDGES[:-1], INTENSITY_EDGES[1:]
    return pd.DataFrame({"bin_index": np.arange(1, N_INTENSITY_BINS + 1), "bin_from": lo, "bin_to": hi,
                         "interpolation": (lo + hi) / 2})


def event_gusts(event: pd.Series | dict, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Central estimate of the maximum gust (m/s) of one event at points ``lat``, ``lon``."""
    lon0 = float(event["landfall_lon"])
    lat0 = float(coast_lat(lon0))
    heading = np.deg2rad(float(event["heading_deg"]))
    dx = (np.asarray(lon) - lon0) * _KM_PER_DEG_LON
    dy = (np.asarray(lat) - lat0) * _KM_PER_DEG_LAT
    along = dx * np.sin(heading) + dy * np.cos(heading)      # km travelled since landfall
    lateral = dx * np.cos(heading) - dy * np.sin(heading)    # km to the right of the track
    rmax = float(event["rmax_km"])
    vmax = float(event["vmax_ms"]) * np.exp(-np.maximum(along, 0.0) / float(event["decay_km"]))
    distance = np.abs(lateral)
    profile = np.where(distance <= rmax, 1.0, (rmax / np.maximum(distance, rmax)) ** _PROFILE_EXPONENT)
    asymmetry = 1.0 + _ASYMMETRY * np.clip(lateral / (2 * rmax), -1.0, 1.0)
    return _GUST_FACTOR * vmax * profile * asymmetry


def normalise_probabilities(probability: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """float32 probabilities whose groups (rows ``group_start[k]:group_start[k+1]``) sum to 1 within 1e-7.

    The float64 values are renormalised per group, rounded to float32, and each group's rounding
    remainder is added to its largest value.
    """
    p = np.asarray(probability, dtype=np.float64)
    sums = np.add.reduceat(p, group_start)
    sizes = np.diff(np.append(group_start, len(p)))
    p = p / np.repeat(sums, sizes)
    p32 = p.astype(np.float32)
    remainder = 1.0 - np.add.reduceat(p32.astype(np.float64), group_start)
    largest = np.array([start + int(np.argmax(p32[start:start + size])) for start, size in zip(group_start, sizes,
                                                                                               strict=True)])
    p32[largest] = (p32[largest].astype(np.float64) + remainder).astype(np.float32)
    return p32


def build_footprint(catalogue: pd.DataFrame) -> np.ndarray:
    """The footprint of every event of ``catalogue``.

    Returns
    -------
    numpy.ndarray
        ``FOOTPRINT_CSV_DTYPE`` records (event_id, areaperil_id, intensity_bin_id, probability),
        sorted by event, areaperil and intensity bin; each (event, areaperil) sums to 1.
    """
    cells = areaperil_cells()
    # bin k's range in log space; the first and last bins are open-ended
    log_edges = np.concatenate(([-np.inf], np.log(INTENSITY_EDGES[1:-1]), [np.inf]))
    parts = []
    for event in catalogue.itertuples(index=False):
        gust = event_gusts(event._asdict(), cells["lat"].to_numpy(), cells["lon"].to_numpy())
        hit = gust >= _MIN_GUST
        if not hit.any():
            continue
        z = (log_edges[None, :] - np.log(gust[hit])[:, None]) / _SIGMA
        probability = np.diff(ndtr(z), axis=1)                       # [cell, bin]
        cell_row, bin_index = np.nonzero(probability >= _MIN_BIN_PROBABILITY)
        rows = np.empty(len(cell_row), dtype=FOOTPRINT_CSV_DTYPE)
        rows["event_id"] = event.event_id
        rows["areaperil_id"] = cells["areaperil_id"].to_numpy()[hit][cell_row].astype(AREAPERIL_INT)
        rows["intensity_bin_id"] = bin_index + 1
        starts = np.flatnonzero(np.r_[True, cell_row[1:] != cell_row[:-1]])
        rows["probability"] = normalise_probabilities(probability[cell_row, bin_index], starts)
        parts.append(rows)
    footprint = np.concatenate(parts) if parts else np.zeros(0, FOOTPRINT_CSV_DTYPE)
    order = np.lexsort((footprint["intensity_bin_id"], footprint["areaperil_id"], footprint["event_id"]))
    return footprint[order]
