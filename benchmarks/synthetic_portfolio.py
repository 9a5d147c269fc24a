"""A reproducible synthetic OED portfolio on PiWind's geography, for input-generation benchmarks.

``python -m benchmarks.synthetic_portfolio --locations 1000000 --out DIR`` writes
``location.csv`` and ``account.csv``: locations drawn from PiWind's own 12,598 (occupancy,
construction, TIV mix) with jittered coordinates clipped to the model grid, grouped into
accounts of ~200 locations, with random site terms (deductibles and limits, some as % of
TIV) and two-layer policies per account. The same seed always gives the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

#: PiWind's model grid (lat, lon bounds of the areaperil cells)
LAT = (52.7340, 52.7947)
LON = (-0.9177, -0.8570)
PIWIND_LOCATIONS = "piwind/tests/inputs/SourceLocOEDPiWind.csv"


def make_portfolio(shared: Path, n_locations: int, seed: int = 20261122, locations_per_account: int = 200):
    """Return (location, account) DataFrames in OED format."""
    rng = np.random.default_rng(seed)
    base = pd.read_csv(shared / PIWIND_LOCATIONS)
    pick = rng.integers(0, len(base), n_locations)
    loc = base.iloc[pick].reset_index(drop=True)
    n_acc = max(1, n_locations // locations_per_account)
    acc_of = np.sort(rng.integers(0, n_acc, n_locations))
    loc["PortNumber"] = 1
    loc["AccNumber"] = np.char.add("A", acc_of.astype(str))
    loc["LocNumber"] = np.char.add("L", np.arange(1, n_locations + 1).astype(str))
    loc["Latitude"] = np.clip(loc["Latitude"] + rng.uniform(-0.003, 0.003, n_locations), LAT[0] + 1e-6, LAT[1] - 1e-6)
    loc["Longitude"] = np.clip(loc["Longitude"] + rng.uniform(-0.003, 0.003, n_locations), LON[0] + 1e-6,
                               LON[1] - 1e-6)
    loc["BuildingTIV"] = np.round(loc["BuildingTIV"] * rng.uniform(0.5, 2.0, n_locations), -2)
    loc["ContentsTIV"] = np.round(loc["ContentsTIV"] * rng.uniform(0.5, 2.0, n_locations), -2)
    loc["BITIV"] = np.round(loc["BITIV"] * rng.uniform(0.5, 2.0, n_locations), -2)
    # site terms: a building deductible (money, or % of TIV for 20% of sites) and an all-coverage limit
    pct = rng.random(n_locations) < 0.2
    loc["LocDed1Building"] = np.where(pct, np.round(rng.uniform(0.005, 0.05, n_locations), 3),
                                      np.round(rng.uniform(250, 5000, n_locations), -1))
    loc["LocDedType1Building"] = np.where(pct, 2, 0)
    loc["LocLimit6All"] = np.where(rng.random(n_locations) < 0.5,
                                   np.round((loc["BuildingTIV"] + loc["ContentsTIV"]) * rng.uniform(0.5, 0.9), -2), 0)
    loc["LocLimitType6All"] = 0
    loc["LocPeril"] = "WW1"
    loc = loc.drop(columns=["BuildingID", "StreetAddress"], errors="ignore")

    accounts = np.arange(n_acc)
    acc = pd.DataFrame({
        "PortNumber": 1,
        "AccNumber": np.repeat(np.char.add("A", accounts.astype(str)), 2),
        "AccCurrency": "GBP",
        "PolNumber": np.tile(["Layer1", "Layer2"], n_acc),
        "PolPerilsCovered": "WW1",
        "PolPeril": "WW1",
        "LayerNumber": np.tile([1, 2], n_acc),
        "LayerParticipation": np.round(rng.uniform(0.2, 1.0, 2 * n_acc), 2),
        "LayerLimit": np.tile([5_000_000, 100_000_000], n_acc),
        "LayerAttachment": np.tile([500_000, 5_500_000], n_acc),
        "PolDed6All": np.repeat(np.round(rng.uniform(1000, 20000, n_acc), -2), 2),
        "PolDedType6All": 0,
        "OEDVersion": "latest version",
    })
    return loc, acc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    loc, acc = make_portfolio(args.shared, args.locations, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    loc.to_csv(args.out / "location.csv", index=False)
    acc.to_csv(args.out / "account.csv", index=False)
    print(f"{len(loc)} locations, {acc['AccNumber'].nunique()} accounts -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
