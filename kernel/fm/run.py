"""fm-run: one deterministic event through the insurance FM and the reinsurance passes.

This is the reference's "run FM test" made into a command: every item's ground-up
loss is ``loss factor x coverage TIV / number of items of the coverage`` (one
sample per loss factor), then the insured loss (IL, allocation rule 2 by default)
and, when ``ri_layers.json`` is present, each reinsurance pass in inuring order,
each a net FM pass over the previous pass's output (allocation rule 3 by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from perilflow.kernel.fm.compute import run_fm
from perilflow.kernel.fm.structure import FMPlan, build_plan
from perilflow.kernel.fm.terms import profile_to_terms
from perilflow.kernel.oasis.files import read_fm_inputs, read_ri_layers, read_table

EVENT_ID = 1
#: special columns carried in front of the samples: TIV (sidx -3) and mean (sidx -1)
SPECIAL_SIDX = (-3, -1)


@dataclass
class FMResult:
    """Losses of one FM pass: ``values[row, col]`` for ``ids[row]`` and the sample columns."""

    ids: np.ndarray
    values: np.ndarray


def load_plan(input_dir: Path, allocation_rule: int, with_items: bool = True) -> FMPlan:
    """Read and cross-check the fm_* files of ``input_dir`` (bin preferred, csv otherwise); build the plan."""
    fm = read_fm_inputs(input_dir)
    item_cov = cov_tiv = None
    if with_items and fm.items is not None and fm.coverages is not None:
        item_cov = fm.items["coverage_id"].astype(np.int64)
        cov_tiv = fm.coverages["tiv"].astype(np.float64)
    profile = fm.fm_profile[np.argsort(fm.fm_profile["profile_id"], kind="stable")]
    rules, terms = profile_to_terms(profile)
    return build_plan(fm.fm_programme, fm.fm_policytc, rules, terms, profile["profile_id"], fm.stepped,
                      fm.fm_xref, allocation_rule, item_cov, cov_tiv)


def deterministic_losses(input_dir: Path, loss_factors: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Ground-up losses of the deterministic event: (item_ids, float64[n_items, 2 + n_factors]).

    Columns: TIV, mean (0), then one sample per loss factor.
    """
    items = read_table(input_dir, "items")
    coverages = read_table(input_dir, "coverages")
    cov = items["coverage_id"].astype(np.int64)
    per_cov = np.bincount(cov, minlength=coverages.shape[0] + 1)
    tiv = coverages["tiv"].astype(np.float64)[cov - 1] / per_cov[cov]
    losses = np.zeros((items.shape[0], len(SPECIAL_SIDX) + len(loss_factors)))
    losses[:, 0] = tiv
    for k, f in enumerate(loss_factors):
        losses[:, len(SPECIAL_SIDX) + k] = f * tiv
    return items["item_id"].astype(np.int64), losses


def _pass_input(prev: FMResult, n_items: int, where: Path) -> np.ndarray:
    """Place the previous pass's outputs as the items (item_id = output_id) of the next pass."""
    if prev.ids.shape[0] and prev.ids.max() > n_items:
        raise ValueError(
            f"{where}: fm_programme has {n_items} items but the previous pass produced output_id "
            f"{int(prev.ids.max())}; the RI files do not match the insurance outputs"
        )
    losses = np.zeros((n_items, prev.values.shape[1]))
    losses[prev.ids - 1] = prev.values
    return losses


def fm_run(
    input_dir: Path,
    output_dir: Path,
    loss_factors: list[float],
    alloc_il: int = 2,
    alloc_ri: int = 3,
    factor_column: bool | None = None,
    with_ri: bool = True,
) -> dict[str, Path]:
    """Run the deterministic event and write guls.csv, ils.csv and (with RI files) rils.csv.

    ``factor_column`` adds ``loss_factor_idx`` to the outputs (default: when there are
    several loss factors); ``with_ri=False`` ignores ri_layers.json. Returns the paths written.
    """
    input_dir = Path(input_dir)
    output_dir = Path(output_dir)
    if not loss_factors:
        raise ValueError("give at least one loss factor (--loss-factor 1.0)")
    if factor_column is None:
        factor_column = len(loss_factors) > 1
    item_ids, gul = deterministic_losses(input_dir, loss_factors)

    il_plan = load_plan(input_dir, alloc_il)
    if il_plan.n_items != gul.shape[0]:
        raise ValueError(f"{input_dir}: items has {gul.shape[0]} rows but fm_programme has {il_plan.n_items} items")
    il = FMResult(il_plan.output_id.astype(np.int64), run_fm(il_plan, gul))

    ri = None
    for ri_pass in read_ri_layers(input_dir) if with_ri else []:
        plan = load_plan(ri_pass.directory, alloc_ri, with_items=False)
        prev = ri if ri is not None else il
        ri = FMResult(plan.output_id.astype(np.int64),
                      run_fm(plan, _pass_input(prev, plan.n_items, ri_pass.directory), net=True))

    output_dir.mkdir(parents=True, exist_ok=True)
    written = {"guls": output_dir / "guls.csv", "ils": output_dir / "ils.csv"}
    write_losses(written["guls"], "item_id", FMResult(item_ids, gul), factor_column, keep_zero_rows=True)
    write_losses(written["ils"], "output_id", il, factor_column)
    if ri is not None:
        written["rils"] = output_dir / "rils.csv"
        write_losses(written["rils"], "output_id", ri, factor_column)
    return written


def losses_frame(id_name: str, result: FMResult, factor_column: bool, keep_zero_rows: bool = False) -> pd.DataFrame:
    """Long table ``event_id, <id_name>, loss[, loss_factor_idx]`` of the sample columns.

    As the reference's FM output, only positive losses are written (``keep_zero_rows`` keeps all).
    """
    samples = result.values[:, len(SPECIAL_SIDX):]
    n_s = samples.shape[1]
    frame = pd.DataFrame({
        "event_id": np.full(samples.size, EVENT_ID, dtype=np.int64),
        id_name: np.repeat(result.ids, n_s),
        "loss": samples.reshape(-1),
    })
    if factor_column:
        frame["loss_factor_idx"] = np.tile(np.arange(n_s), result.ids.shape[0])
    if not keep_zero_rows:
        frame = frame[frame["loss"] > 0]
    return frame.sort_values(["event_id", id_name] + (["loss_factor_idx"] if factor_column else []),
                             kind="stable").reset_index(drop=True)


def write_losses(path: Path, id_name: str, result: FMResult, factor_column: bool,
                 keep_zero_rows: bool = False) -> None:
    """Write a losses csv atomically (temporary name, then rename)."""
    frame = losses_frame(id_name, result, factor_column, keep_zero_rows)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False, float_format="%.10g")
    tmp.replace(path)
