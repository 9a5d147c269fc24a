"""exposure-run: OED exposure to Oasis input files to deterministic losses, as the reference's ``exposure run``.

:func:`exposure_run` chains the whole input generation on one machine:

1. load and check the OED files (:func:`perilflow.kernel.oed.load_exposure`);
2. key every location with the deterministic lookup for the given peril(s)
   (:func:`perilflow.kernel.lookup.deterministic.deterministic_keys`);
3. write the Oasis input files into ``OUT/input``: ``keys.csv``, the GUL files
   (:mod:`perilflow.kernel.inputs.gul`), the IL files (:mod:`perilflow.kernel.inputs.il`)
   and, with reinsurance files, the ``RI_n`` passes and ``ri_layers.json``
   (:mod:`perilflow.kernel.inputs.ri`);
4. run one deterministic event whose ground-up loss is ``loss factor x TIV``
   (:func:`perilflow.kernel.fm.run.fm_run`: IL allocation rule 2, RI rule 3 net) into
   ``OUT/guls.csv``, ``OUT/ils.csv`` and ``OUT/rils.csv``;
5. sum the losses per location into ``OUT/loc_summary.csv``
   (``PortNumber, AccNumber, LocNumber[, loss_factor_idx], loss_gul, loss_il[, loss_ri]``)
   exactly as the reference does: every ground-up loss is joined to the FM outputs of its
   item through ``fm_summary_map`` (so an item with several layers counts its ground-up
   loss once per layer), and locations are listed in the order of the reference's
   ``groupby`` over the identifiers as read back from ``fm_summary_map.csv``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from perilflow.kernel.inputs.generate import write_oasis_files
from perilflow.kernel.inputs.gul import write_frame_csv
from perilflow.kernel.lookup.deterministic import deterministic_keys
from perilflow.kernel.oed import load_exposure

__all__ = ["exposure_run", "location_summary"]

PathOrFrame = str | os.PathLike | pd.DataFrame
LOCATION_KEYS = ["PortNumber", "AccNumber", "LocNumber"]
KEYS_HEADER = {"loc_id": "LocID", "peril_id": "PerilID", "coverage_type": "CoverageTypeID",
               "area_peril_id": "AreaPerilID", "vulnerability_id": "VulnerabilityID"}


def exposure_run(location: PathOrFrame, account: PathOrFrame, output_dir: str | os.PathLike, ri_info=None,
                 ri_scope=None, peril: str | Sequence[str] = "WTC", loss_factors: Sequence[float] = (1.0,), *,
                 allow_duplicate_locations: bool = False) -> dict[str, Path]:
    """Generate Oasis input files from OED exposure and run the deterministic event on them.

    Parameters
    ----------
    location, account : str, os.PathLike or pandas.DataFrame
        OED location and account files (CSV or parquet) or frames.
    output_dir : str or os.PathLike
        Folder for the results; the Oasis input files go to ``output_dir/input``.
    ri_info, ri_scope : str, os.PathLike, pandas.DataFrame or None
        OED reinsurance info and scope; both or neither.
    peril : str or sequence of str, default "WTC"
        Peril(s) or peril group(s) the deterministic model covers, e.g. ``"WW2"``.
    loss_factors : sequence of float, default (1.0,)
        Ground-up loss as a fraction of TIV, one sample per factor; with several factors
        the outputs carry ``loss_factor_idx`` (0-based position of the factor).
    allow_duplicate_locations : bool, default False
        Accept a location listed twice in its account with different values (the
        reference then uses the first row), with a warning instead of an error.

    Returns
    -------
    dict of str to pathlib.Path
        ``input`` (the folder), each Oasis file written (``keys``, ``items``, ``coverages``,
        ``gul_summary_map``, ``fm_programme``, ``fm_policytc``, ``fm_profile``, ``fm_xref``,
        ``fm_summary_map``, and ``ri_layers`` with RI), then ``guls``, ``ils``, ``rils`` (with RI)
        and ``loc_summary``.

    Raises
    ------
    OedValidationError
        If the OED files have fatal problems.
    ValueError
        For other user errors (no loss factor, only one RI file, terms without calcrule, ...).
    """
    from perilflow.kernel.fm.run import fm_run

    factors = [float(f) for f in loss_factors]
    if not factors:
        raise ValueError("no loss factor given. Fix: give at least one, e.g. --loss-factor 1.0.")
    if (ri_info is None) != (ri_scope is None):
        raise ValueError("only one reinsurance file was given. Fix: give both --ri-info and --ri-scope, or neither.")
    with_ri = ri_info is not None
    perils = [peril] if isinstance(peril, str) else list(peril)

    exposure = load_exposure(location, account, ri_info, ri_scope,
                             allow_duplicate_locations=allow_duplicate_locations)
    out = Path(output_dir)
    input_dir = out / "input"
    input_dir.mkdir(parents=True, exist_ok=True)
    keys = deterministic_keys(exposure.location, perils)
    if keys.empty:
        raise ValueError(f"no location covers the peril(s) {', '.join(perils)} (LocPerilsCovered). Fix: choose "
                         "a peril the locations cover, or add it to their LocPerilsCovered.")
    written: dict[str, Path] = {"input": input_dir}
    written["keys"] = write_frame_csv(input_dir / "keys.csv", keys.rename(columns=KEYS_HEADER))
    written.update(write_oasis_files(exposure, keys, input_dir))

    losses = fm_run(input_dir, out, factors, factor_column=len(factors) > 1, with_ri=with_ri)
    written.update(losses)
    summary = location_summary(losses["guls"], losses["ils"], losses.get("rils"), input_dir / "fm_summary_map.csv")
    written["loc_summary"] = write_frame_csv(out / "loc_summary.csv", summary)
    return written


def location_summary(guls: str | os.PathLike, ils: str | os.PathLike, rils: str | os.PathLike | None,
                     fm_summary_map: str | os.PathLike) -> pd.DataFrame:
    """Losses per location, as the reference's ``exposure run -o loc`` writes them.

    Parameters
    ----------
    guls, ils, rils : path-like
        Loss files of :func:`perilflow.kernel.fm.run.fm_run` (``rils`` None without RI).
    fm_summary_map : path-like
        The ``fm_summary_map.csv`` of the input folder.

    Returns
    -------
    pandas.DataFrame
        ``PortNumber, AccNumber, LocNumber[, loss_factor_idx], loss_gul, loss_il[, loss_ri]``.
    """
    outputs = pd.read_csv(fm_summary_map, keep_default_na=False, na_values=[""])
    gul = pd.read_csv(guls).rename(columns={"loss": "loss_gul"})
    factor = ["loss_factor_idx"] if "loss_factor_idx" in gul.columns else []
    rows = gul.merge(outputs, left_on="item_id", right_on="agg_id")
    join = ["event_id", "output_id", *factor]
    rows = rows.merge(pd.read_csv(ils).rename(columns={"loss": "loss_il"}), on=join, how="left")
    losses = ["loss_gul", "loss_il"]
    if rils is not None:
        rows = rows.merge(pd.read_csv(rils).rename(columns={"loss": "loss_ri"}), on=join, how="left")
        losses.append("loss_ri")
    keys = LOCATION_KEYS + factor
    summary = rows.groupby(keys)[losses].sum().reset_index()
    summary[LOCATION_KEYS] = summary[LOCATION_KEYS].astype(str)
    return summary[keys + losses]
