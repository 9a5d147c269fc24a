"""Model-change impact: compare the ORD outputs of two or more analyses, and merge outputs into one.

:func:`compare` reads each analysis's output folder with :func:`perilflow.report.read_results`
and lines up, per perspective (gul, il, ri) and summary set:

* the AAL of the set (summed over its summary ids; AAL is additive), SampleType 1 (analytical)
  and 2 (mean over the samples), from the period ALT;
* the OEP (EPType 1) and AEP (EPType 3) loss of every summary id of the set at each requested
  return period, from the EPT (full uncertainty, EPCalc 2, when present; losses between two
  return periods of the file are interpolated linearly, as Oasis does; outside them: none).

Each row holds the values of every analysis and their absolute and relative differences
to the first analysis (the baseline): ``value - baseline`` and ``(value - baseline) /
baseline`` (none when the baseline is 0 or missing). :func:`to_csv` and :func:`to_html` render
the same rows; the HTML page overlays the analyses' portfolio EP curves in an inline SVG.

:func:`merge_outputs` puts the ORD files of several output folders into one folder, each
analysis's summary sets renumbered after the previous analysis's (``combine/``).

No Airflow here: the API and the CLI use this module.
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perilflow.report import AEP, DEFAULT_RETURN_PERIODS, OEP, PERSPECTIVES, Results, read_results

METRICS = ("AAL", "OEP", "AEP")
SAMPLE_TYPES = {1: "analytical", 2: "sample mean"}


@dataclass(frozen=True)
class Row:
    """One compared quantity: its key, one value per analysis, differences to the first."""

    perspective: str
    summary_set: int
    metric: str
    summary_id: int | None = None
    sample_type: int | None = None
    return_period: float | None = None
    values: tuple[float | None, ...] = ()

    @property
    def differences(self) -> tuple[float | None, ...]:
        base = self.values[0] if self.values else None
        return tuple(None if base is None or v is None else v - base for v in self.values)

    @property
    def relative_differences(self) -> tuple[float | None, ...]:
        base = self.values[0] if self.values else None
        return tuple(None if base is None or v is None or base == 0 else (v - base) / base for v in self.values)

    def label(self) -> str:
        if self.metric == "AAL":
            return f"AAL ({SAMPLE_TYPES.get(self.sample_type or 0, self.sample_type)})"
        return f"{self.metric} {self.return_period:g}y (summary id {self.summary_id})"


@dataclass(frozen=True)
class Comparison:
    labels: tuple[str, ...]
    return_periods: tuple[float, ...]
    rows: list[Row]
    results: list[Results] = field(default_factory=list)
    ep_calcs: tuple[int | None, ...] = ()


def _ep_at(results: Results, perspective: str, set_id: int, ep_type: int, summary_id: int,
           return_period: float) -> float | None:
    s = results.sets.get((perspective, set_id))
    curves = (s.oep if ep_type == OEP else s.aep) if s else {}
    curve = curves.get(summary_id)
    return None if curve is None else curve.loss_at(return_period)


def compare(outputs: Sequence[str | Path | Results], labels: Sequence[str] | None = None,
            return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS) -> Comparison:
    """Compare two or more ORD output folders (or results already read); the first is the baseline."""
    if len(outputs) < 2:
        raise ValueError(f"compare needs two or more analyses, got {len(outputs)}")
    rps = tuple(float(rp) for rp in return_periods)
    if not rps or any(not math.isfinite(rp) or rp <= 0 for rp in rps):
        raise ValueError(f"return_periods {list(return_periods)} must be positive numbers, e.g. [10, 100, 250]")
    results = [o if isinstance(o, Results) else read_results(o) for o in outputs]
    names = tuple(labels) if labels else tuple(f"analysis {i + 1}" for i in range(len(results)))
    if len(names) != len(results):
        raise ValueError(f"{len(names)} labels for {len(results)} analyses")
    keys = sorted({k for r in results for k in r.sets}, key=lambda k: (PERSPECTIVES.index(k[0]), k[1]))
    rows: list[Row] = []
    for perspective, set_id in keys:
        sets = [r.sets.get((perspective, set_id)) for r in results]
        for sample_type in (1, 2):
            values = tuple(None if s is None else (s.aal_analytical if sample_type == 1 else s.aal_sampled)
                           for s in sets)
            if any(v is not None for v in values):
                rows.append(Row(perspective, set_id, "AAL", sample_type=sample_type, values=values))
        for metric, ep_type in (("OEP", OEP), ("AEP", AEP)):
            ids = sorted({sid for s in sets if s is not None for sid in (s.oep if ep_type == OEP else s.aep)})
            for summary_id in ids:
                for rp in rps:
                    values = tuple(_ep_at(r, perspective, set_id, ep_type, summary_id, rp) for r in results)
                    rows.append(Row(perspective, set_id, metric, summary_id=summary_id, return_period=rp,
                                    values=values))
    ep_calcs = tuple(next((s.ep_calc for s in r.sets.values() if s.ep_calc is not None), None) for r in results)
    return Comparison(labels=names, return_periods=rps, rows=rows, results=results, ep_calcs=ep_calcs)


def _clean(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def to_json(comparison: Comparison, analyses: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The comparison as JSON: the analyses (in order, the first is the baseline) and one object per row."""
    return {
        "analyses": list(analyses) if analyses is not None else [{"label": lab} for lab in comparison.labels],
        "baseline": comparison.labels[0], "return_periods": list(comparison.return_periods),
        "ep_calc": list(comparison.ep_calcs),
        "rows": [{"perspective": r.perspective, "summary_set": r.summary_set, "metric": r.metric,
                  "sample_type": r.sample_type, "summary_id": r.summary_id, "return_period": r.return_period,
                  "values": [_clean(v) for v in r.values], "differences": [_clean(v) for v in r.differences],
                  "relative_differences": [_clean(v) for v in r.relative_differences]} for r in comparison.rows],
    }


def to_csv(comparison: Comparison) -> str:
    """One line per row and analysis: the key, the value, the differences to the baseline."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["perspective", "summary_set", "metric", "sample_type", "summary_id", "return_period",
                     "analysis", "value", "difference", "relative_difference"])
    for r in comparison.rows:
        for label, v, d, rel in zip(comparison.labels, r.values, r.differences, r.relative_differences, strict=True):
            writer.writerow([r.perspective, r.summary_set, r.metric, "" if r.sample_type is None else r.sample_type,
                             "" if r.summary_id is None else r.summary_id,
                             "" if r.return_period is None else f"{r.return_period:g}", label,
                             *("" if x is None else repr(float(x)) for x in (v, d, rel))])
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- HTML

PALETTE = ("#1f6fb4", "#e0700e", "#2a9d3a", "#c4302b", "#8a5fbf", "#7f5539", "#d36aa8", "#5f6b73")


def overlay_svg(comparison: Comparison, perspective: str, width: int = 640, height: int = 360) -> str:
    """The portfolio OEP (solid) and AEP (dashed) curves of every analysis for one perspective, overlaid.

    Loss (linear) against return period (log10); one ``<path class="curve">`` per curve with
    ``data-analysis`` and ``data-ep``. Empty string when no analysis has a portfolio curve.
    """
    curves = []
    for i, r in enumerate(comparison.results):
        for name, ep_type in (("OEP", OEP), ("AEP", AEP)):
            c = r.curve(perspective, ep_type)
            if c is not None and c.return_periods:
                curves.append((i, name, c))
    if not curves:
        return ""
    left, right, top, bottom = 70, 150, 30, 40
    rps = [rp for _, _, c in curves for rp in c.return_periods]
    losses = [v for _, _, c in curves for v in c.losses]
    x0, x1 = math.log10(min(rps)), math.log10(max(rps))
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = max(losses) or 1.0

    def sx(rp: float) -> float:
        return left + (math.log10(rp) - x0) / (x1 - x0) * (width - left - right)

    def sy(v: float) -> float:
        return height - bottom - v / y1 * (height - top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="ep-overlay" data-perspective="{perspective}" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
             f'font-size="11">',
             f'<text x="{left}" y="18" font-size="13">{html.escape(perspective.upper())} portfolio EP curves '
             f'(OEP solid, AEP dashed)</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>']
    for k in range(5):
        v = y1 * k / 4
        parts.append(f'<text x="{left - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    decade = 10 ** math.floor(x0)
    while decade <= 10 ** x1 * 1.0001:
        if decade >= 10 ** x0 * 0.9999:
            parts.append(f'<text x="{sx(decade):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                         f'{decade:g}</text>')
        decade *= 10
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">'
                 f'return period (years)</text>')
    for i, name, c in curves:
        points = " ".join(f"{'M' if j == 0 else 'L'}{sx(rp):.1f},{sy(v):.1f}"
                          for j, (rp, v) in enumerate(zip(c.return_periods, c.losses, strict=True)))
        dash = ' stroke-dasharray="6,4"' if name == "AEP" else ""
        parts.append(f'<path class="curve" data-analysis="{i}" data-ep="{name}" d="{points}" fill="none" '
                     f'stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="2"{dash}/>')
    for i, label in enumerate(comparison.labels):
        y = top + 14 * i
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<line x1="{width - right + 10}" y1="{y}" x2="{width - right + 30}" y2="{y}" '
                     f'stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{width - right + 34}" y="{y + 4}">{html.escape(label[:18])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt(v: float | None, relative: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v * 100:+.2f}%" if relative else f"{v:,.2f}"


def to_html(comparison: Comparison, title: str = "Perilflow model-change impact") -> str:
    """A self-contained page: overlaid EP curves per perspective and the table of values and differences."""
    labels = comparison.labels
    head = "".join(f"<th>{html.escape(lab)}</th>" for lab in labels)
    diffs = "".join(f"<th>&Delta; {html.escape(lab)}</th><th>&Delta;% {html.escape(lab)}</th>" for lab in labels[1:])
    body = []
    for r in comparison.rows:
        cells = "".join(f"<td>{_fmt(v)}</td>" for v in r.values)
        cells += "".join(f"<td>{_fmt(d)}</td><td>{_fmt(rel, True)}</td>"
                         for d, rel in zip(r.differences[1:], r.relative_differences[1:], strict=True))
        body.append(f"<tr><td>{r.perspective}</td><td>{r.summary_set}</td><td>{html.escape(r.label())}</td>"
                    f"{cells}</tr>")
    charts = "".join(overlay_svg(comparison, p) for p in PERSPECTIVES)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:nth-child(-n+3){text-align:left}"
            "</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>Baseline: {html.escape(labels[0])}. Differences are to the baseline; "
            "AAL from the period ALT, OEP/AEP from the EPT (full uncertainty when present), linear in the return "
            f"period.</p><div>{charts}</div><table><thead><tr><th>perspective</th><th>set</th><th>metric</th>"
            f"{head}{diffs}</tr></thead><tbody>{''.join(body)}</tbody></table></body></html>\n")


# ---------------------------------------------------------------------------------------------- merge

_ORD_FILE = re.compile(r"^(gul|il|ri)_S(\d+)_(.+)$")


def merge_outputs(folders: Sequence[str | Path], target: str | Path) -> list[dict[str, Any]]:
    """Copy the ORD files of ``folders`` into ``target``, renumbering summary sets so none collide.

    Per perspective, analysis k's set n becomes n plus the highest set id of the analyses
    before it; returns that map (also written as ``target/combine_map.csv``). Files that are
    not ``<gul|il|ri>_S<n>_...`` ORD files are left out.
    """
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    offsets = dict.fromkeys(PERSPECTIVES, 0)
    mapping: list[dict[str, Any]] = []
    for index, folder in enumerate(folders):
        source = Path(folder)
        if (source / "output").is_dir():
            source = source / "output"
        found = [(m, p) for p in sorted(source.iterdir()) if p.is_file() and (m := _ORD_FILE.match(p.name))]
        if not found:
            raise FileNotFoundError(f"no ORD output files in {folder}; was the analysis run with ORD outputs?")
        highest = dict.fromkeys(PERSPECTIVES, 0)
        for m, path in found:
            perspective, set_id = m.group(1), int(m.group(2))
            new_id = offsets[perspective] + set_id
            highest[perspective] = max(highest[perspective], set_id)
            shutil.copyfile(path, out / f"{perspective}_S{new_id}_{m.group(3)}")
            entry = {"perspective": perspective, "summary_set": new_id, "analysis_index": index,
                     "source_summary_set": set_id}
            if entry not in mapping:
                mapping.append(entry)
        for perspective in PERSPECTIVES:
            offsets[perspective] += highest[perspective]
    with (out / "combine_map.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["perspective", "summary_set", "analysis_index", "source_summary_set"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(mapping, key=lambda e: (PERSPECTIVES.index(e["perspective"]), e["summary_set"])))
    return mapping
