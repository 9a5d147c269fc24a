"""The demo OED portfolio: 500 locations in two accounts, their policies, and one Cat XL treaty.

Locations (``location.csv``)
    400 homes (account ``RES01``: single- and multi-family, wood frame or masonry) and 100
    commercial buildings (account ``COM01``: retail, offices, general commercial; reinforced
    concrete or steel), all on land inside the model's grid. Most sit in three towns (two on
    the coast, one inland), the rest are scattered. Building TIVs are lognormal (homes around
    280,000, commercial around 3.5 million), contents 50 % (homes) or 60 % (commercial) of the
    building. Site terms: homes have a 2 % of building TIV hurricane deductible on the building
    and 1,000 on contents; commercial sites a 25,000 deductible on the whole site.

Accounts (``account.csv``)
    ``RES01``: one policy, a 100,000 per-event deductible and one layer with a 150 million
    limit. ``COM01``: one policy with two layers, 24.5 million xs 0.5 million (100 %) and
    75 million xs 25 million (40 % share).

Reinsurance (``ri_info.csv``, ``ri_scope.csv``)
    One catastrophe excess of loss treaty on the whole portfolio (risk level SEL):
    :data:`CAT_XL_LIMIT` xs :data:`CAT_XL_ATTACHMENT` per occurrence, 95 % placed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perilflow.kernel.demo.hazard import GRID, coast_lat

__all__ = [
    "CAT_XL_ATTACHMENT",
    "CAT_XL_LIMIT",
    "N_COMMERCIAL",
    "N_RESIDENTIAL",
    "build_accounts",
    "build_locations",
    "build_ri_info",
    "build_ri_scope",
]

N_RESIDENTIAL = 400
N_COMMERCIAL = 100
PORTFOLIO = 1
CURRENCY = "USD"
INCEPTION, EXPIRY = "2025-01-01", "2025-12-31"

#: The Cat XL treaty's occurrence attachment and limit (USD).
CAT_XL_ATTACHMENT = 15_000_000.0
CAT_XL_LIMIT = 45_000_000.0

#: (lat, lon, spread in degrees, share of the locations) of the towns; the rest are scattered.
_TOWNS = ((29.52, -90.25, 0.07, 0.35), (29.48, -89.45, 0.06, 0.25), (30.35, -89.85, 0.09, 0.15))
_MARGIN = 0.01       # degrees kept clear of the grid's edges
_INLAND = 0.03       # degrees kept north of the coastline


def _points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (lat, lon) points on land inside the grid, rounded to 5 decimals."""
    lat_lo, lat_hi = GRID["lat_min"] + _MARGIN, GRID["lat_max"] - _MARGIN
    lon_lo, lon_hi = GRID["lon_min"] + _MARGIN, GRID["lon_max"] - _MARGIN
    town = rng.choice(len(_TOWNS) + 1, size=n, p=[t[3] for t in _TOWNS] + [1 - sum(t[3] for t in _TOWNS)])
    lat, lon = np.empty(n), np.empty(n)
    for i in range(n):
        while True:
            if town[i] < len(_TOWNS):
                t_lat, t_lon, spread, _ = _TOWNS[town[i]]
                y, x = rng.normal(t_lat, spread), rng.normal(t_lon, spread)
            else:
                y, x = rng.uniform(lat_lo, lat_hi), rng.uniform(lon_lo, lon_hi)
            y, x = round(float(y), 5), round(float(x), 5)
            if lat_lo < y < lat_hi and lon_lo < x < lon_hi and y > coast_lat(x) + _INLAND:
                lat[i], lon[i] = y, x
                break
    return lat, lon


def build_locations(rng: np.random.Generator) -> pd.DataFrame:
    """The OED location file (one row per location, residential first)."""
    n_res, n_com = N_RESIDENTIAL, N_COMMERCIAL
    lat, lon = _points(rng, n_res + n_com)
    res_building = np.round(np.clip(280_000 * np.exp(rng.normal(0, 0.45, n_res)), 90_000, 2_500_000), -3)
    com_building = np.round(np.clip(3_500_000 * np.exp(rng.normal(0, 0.8, n_com)), 500_000, 40_000_000), -4)
    building = np.concatenate((res_building, com_building))
    contents = np.concatenate((np.round(0.5 * res_building, -3), np.round(0.6 * com_building, -4)))
    occupancy = np.concatenate((rng.choice([1051, 1052], size=n_res, p=[0.75, 0.25]),
                                rng.choice([1100, 1101, 1104], size=n_com, p=[0.3, 0.4, 0.3])))
    construction = np.concatenate((rng.choice([5050, 5100], size=n_res, p=[0.7, 0.3]),
                                   rng.choice([5150, 5200], size=n_com, p=[0.5, 0.5])))
    residential = np.arange(n_res + n_com) < n_res
    return pd.DataFrame({
        "PortNumber": PORTFOLIO,
        "AccNumber": np.where(residential, "RES01", "COM01"),
        "LocNumber": [f"R{i + 1:04d}" for i in range(n_res)] + [f"C{i + 1:04d}" for i in range(n_com)],
        "LocName": [f"Home {i + 1}" for i in range(n_res)] + [f"Commercial site {i + 1}" for i in range(n_com)],
        "CountryCode": "US",
        "Latitude": lat,
        "Longitude": lon,
        "OccupancyCode": occupancy,
        "ConstructionCode": construction,
        "NumberOfStoreys": np.concatenate((rng.choice([1, 2], size=n_res, p=[0.6, 0.4]),
                                           rng.integers(1, 9, size=n_com))),
        "LocPerilsCovered": "WW1",
        "BuildingTIV": building,
        "OtherTIV": 0.0,
        "ContentsTIV": contents,
        "BITIV": 0.0,
        "LocCurrency": CURRENCY,
        "LocDedType1Building": np.where(residential, 2, 0),
        "LocDed1Building": np.where(residential, 0.02, 0.0),
        "LocDedType3Contents": 0,
        "LocDed3Contents": np.where(residential, 1000.0, 0.0),
        "LocDedType6All": 0,
        "LocDed6All": np.where(residential, 0.0, 25_000.0),
    })


def build_accounts() -> pd.DataFrame:
    """The OED account file: the homeowners policy (one layer) and the commercial policy (two layers)."""
    rows = [
        ("RES01", "RES-HO-2025", 100_000.0, 1, 1.0, 150_000_000.0, 0.0),
        ("COM01", "COM-PR-2025", 0.0, 1, 1.0, 24_500_000.0, 500_000.0),
        ("COM01", "COM-PR-2025", 0.0, 2, 0.4, 75_000_000.0, 25_000_000.0),
    ]
    frame = pd.DataFrame(rows, columns=["AccNumber", "PolNumber", "PolDed6All", "LayerNumber", "LayerParticipation",
                                        "LayerLimit", "LayerAttachment"])
    frame.insert(0, "PortNumber", PORTFOLIO)
    frame.insert(2, "AccCurrency", CURRENCY)
    frame.insert(4, "PolPerilsCovered", "WW1")
    frame.insert(5, "PolInceptionDate", INCEPTION)
    frame.insert(6, "PolExpiryDate", EXPIRY)
    frame.insert(7, "PolDedType6All", 0)
    return frame


def build_ri_info() -> pd.DataFrame:
    """The OED reinsurance info file: one Cat XL layer on the whole portfolio."""
    return pd.DataFrame([{
        "ReinsNumber": 1, "ReinsLayerNumber": 1, "ReinsName": "Demo Cat XL 2025", "ReinsPeril": "WW1",
        "ReinsInceptionDate": INCEPTION, "ReinsExpiryDate": EXPIRY, "CededPercent": 1.0,
        "RiskLimit": 0.0, "RiskAttachment": 0.0, "OccLimit": CAT_XL_LIMIT, "OccAttachment": CAT_XL_ATTACHMENT,
        "PlacedPercent": 0.95, "ReinsCurrency": CURRENCY, "InuringPriority": 1, "ReinsType": "CXL",
        "RiskLevel": "SEL", "UseReinsDates": "N",
    }])


def build_ri_scope() -> pd.DataFrame:
    """The OED reinsurance scope file: the treaty covers portfolio 1."""
    return pd.DataFrame([{
        "ReinsNumber": 1, "PortNumber": PORTFOLIO, "AccNumber": "", "PolNumber": "", "LocGroup": "", "LocNumber": "",
        "CedantName": "", "ProducerName": "", "LOB": "", "CountryCode": "", "ReinsTag": "", "CededPercent": 1.0,
    }])
