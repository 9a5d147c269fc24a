"""ORD outputs: summaries, ELT / PLT / ALT / EPT tables and chunk-mergeable partial results.

Entry points:

* :class:`OutputSpec` (``OutputSpec.from_settings``) -- one perspective's summary sets, xrefs
  and requested tables, from the analysis settings and the summary map;
* :class:`OutputStatic` with :class:`Occurrence` -- occurrences, period weights, return
  periods, quantiles, event rates;
* :func:`accumulate_chunk` -- one event chunk's partial results into its work folder;
* :func:`merge_outputs` -- every chunk's partial results into the ``output/`` files.

The kernels (summary, elt, plt, aal, ept modules) take and return arrays and can be used
directly; :mod:`writers` holds the table layouts and the reference-exact csv formatter.
"""

from perilflow.kernel.outputs.partial import OutputSpec, OutputStatic, SetSpec, accumulate_chunk, merge_outputs
from perilflow.kernel.outputs.plt import Occurrence
from perilflow.kernel.outputs.settings import SummarySetSettings, build_summary_xref, load_analysis_settings
from perilflow.kernel.outputs.summary import SummaryRecords, summarise
from perilflow.kernel.outputs.writers import TABLES, TableLayout, format_csv

__all__ = [
    "TABLES",
    "Occurrence",
    "OutputSpec",
    "OutputStatic",
    "SetSpec",
    "SummaryRecords",
    "SummarySetSettings",
    "TableLayout",
    "accumulate_chunk",
    "build_summary_xref",
    "format_csv",
    "load_analysis_settings",
    "merge_outputs",
    "summarise",
]
