"""Input generation: OED exposure and lookup keys to Oasis input files.

* :mod:`~perilflow.kernel.inputs.gul`: items, coverages, correlations, gul_summary_map;
* :mod:`~perilflow.kernel.inputs.il`: fm_programme, fm_policytc, fm_profile, fm_xref, fm_summary_map;
* :mod:`~perilflow.kernel.inputs.exposure_run`: the deterministic ``exposure-run`` chain
  (OED -> keys -> Oasis files -> losses -> loc_summary.csv).

Each follows oasislmf 2.5 so that the files (ids included) are those the reference writes.
"""

from __future__ import annotations

from perilflow.kernel.inputs.gul import GulInputs, build_gul_inputs, write_gul_inputs
from perilflow.kernel.inputs.il import FmTermsError, IlInputs, build_il_inputs, prepare_account, write_il_inputs

__all__ = [
    "FmTermsError",
    "GulInputs",
    "IlInputs",
    "build_gul_inputs",
    "build_il_inputs",
    "prepare_account",
    "write_gul_inputs",
    "write_il_inputs",
]
