"""An analysis's results as a cat modeller reads them: AAL, OEP/AEP table, EP chart, HTML report.

:func:`read_results` reads an ORD output folder (``<gul|il|ri>_S<n>_<table>.<csv|csv.gz|parquet>``
as the engine writes them) and keeps, per perspective and summary set:

* the AAL summed over the set's summary ids, from the period ALT (``palt``; else ``altmeanonly``):
  SampleType 1 is the analytical mean, SampleType 2 the mean over the samples;
* the OEP (EPType 1) and AEP (EPType 3) curves of each summary id from the EPT, for one EP
  calculation: full uncertainty (EPCalc 2) when the file has it, else the lowest EPCalc present
  (1 mean damage, 3 per-sample mean, 4 sample mean).

EP curves are not additive across summary ids, so they are never summed: the portfolio curve
is the one of a summary set whose level is the whole portfolio (a single summary id). AAL is
additive, so every summary set gives the portfolio's AAL.

:func:`results_table` prints AAL and OEP/AEP at chosen return periods (linear in the return
period between the points of the file, as Oasis interpolates; ``n/a`` outside them);
:func:`ep_chart_svg` plots the portfolio curves as a self-contained SVG; :func:`html_report`
puts both in one self-contained page (no script, no external resource).

No Airflow here: the CLI, the demo and the web UI all use this module.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from perilflow.kernel.oasis.files import atomic_write

PERSPECTIVES = ("gul", "il", "ri")
#: Column headers of the perspectives (RI losses are net of reinsurance).
LABELS = {"gul": "GUL", "il": "IL", "ri": "RI (net)"}
DEFAULT_RETURN_PERIODS = (10, 50, 100, 250, 500, 1000)

#: EPCalc codes (ORD): 1 mean damage, 2 full uncertainty, 3 per-sample mean, 4 sample mean.
EP_CALC_NAMES = {1: "mean damage", 2: "full uncertainty", 3: "per-sample mean", 4: "sample mean"}
FULL_UNCERTAINTY = 2
#: EPType codes (ORD) of the two curves shown.
OEP, AEP = 1, 3

#: ALT tables in order of preference.
_ALT_TABLES = ("palt", "altmeanonly")
_FILE = re.compile(r"^(gul|il|ri)_S(\d+)_(palt|altmeanonly|ept|summary-info)\.(csv|csv\.gz|parquet)$")
#: summary-info columns that are not OED fields.
_INFO_NON_FIELDS = {"summary_id", "tiv", "_not_set_"}


@dataclass(frozen=True)
class EpCurve:
    """Loss by return period, return periods ascending (years)."""

    return_periods: tuple[float, ...]
    losses: tuple[float, ...]

    def loss_at(self, return_period: float) -> float | None:
        """The loss at ``return_period``: linear in the return period between the curve's points.

        Oasis interpolates the same way when a return period falls between two computed
        points. Outside the curve's range the loss is unknown: ``None``.
        """
        rps, losses = self.return_periods, self.losses
        if not rps or return_period < rps[0] or return_period > rps[-1]:
            return None
        for i, rp in enumerate(rps):
            if rp == return_period:
                return losses[i]
            if rp > return_period:
                r0, l0 = rps[i - 1], losses[i - 1]
                return l0 + (return_period - r0) * (losses[i] - l0) / (rp - r0)
        return None  # pragma: no cover - unreachable: return_period <= rps[-1]


@dataclass(frozen=True)
class SummarySet:
    """One perspective's summary set: AAL totals and EP curves per summary id.

    Attributes
    ----------
    perspective : str
        ``gul``, ``il`` or ``ri``.
    set_id : int
    summary_ids : tuple of int
        Every summary id seen (summary-info, ALT and EPT files).
    oed_fields : tuple of str or None
        The set's OED fields (``()`` = whole portfolio), ``None`` when neither the analysis
        settings nor a summary-info file says.
    aal_analytical, aal_sampled : float or None
        AAL summed over the summary ids, SampleType 1 and 2; ``None`` without an ALT file.
    ep_calc : int or None
        EPCalc of the curves kept (see :data:`EP_CALC_NAMES`); ``None`` without an EPT file.
    oep, aep : dict of int to EpCurve
        Curves by summary id.
    files : tuple of str
        Names of the files read.
    info_rows : int or None
        Rows of the set's summary-info file (its number of summary ids), None without one.
    """

    perspective: str
    set_id: int
    summary_ids: tuple[int, ...]
    oed_fields: tuple[str, ...] | None
    aal_analytical: float | None
    aal_sampled: float | None
    ep_calc: int | None
    oep: dict[int, EpCurve] = field(default_factory=dict)
    aep: dict[int, EpCurve] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    info_rows: int | None = None

    @property
    def is_portfolio(self) -> bool:
        """True when the set's one summary id is the whole portfolio.

        A summary-info file lists every summary id, so one row settles it; otherwise the
        analysis settings' ``oed_fields`` (empty = portfolio); otherwise a single summary id in
        the files.
        """
        if self.info_rows is not None:
            return self.info_rows == 1
        if self.oed_fields is not None:
            return not self.oed_fields
        return len(self.summary_ids) == 1

    def portfolio_curve(self, ep_type: int) -> EpCurve | None:
        """The portfolio's OEP (``ep_type`` 1) or AEP (3) curve, or None if the set is not portfolio level."""
        curves = self.oep if ep_type == OEP else self.aep if ep_type == AEP else None
        if curves is None:
            raise ValueError(f"ep_type must be {OEP} (OEP) or {AEP} (AEP), not {ep_type!r}")
        if not self.is_portfolio or len(curves) != 1:
            return None
        return next(iter(curves.values()))


@dataclass(frozen=True)
class Results:
    """Everything :func:`read_results` found in one output folder."""

    output_dir: Path
    sets: dict[tuple[str, int], SummarySet]

    def perspectives(self) -> tuple[str, ...]:
        """The perspectives present, in gul, il, ri order."""
        return tuple(p for p in PERSPECTIVES if any(k[0] == p for k in self.sets))

    def summary_sets(self, perspective: str) -> list[SummarySet]:
        """The perspective's summary sets by set id."""
        return [s for (p, _), s in sorted(self.sets.items()) if p == perspective]

    def aal_set(self, perspective: str) -> SummarySet | None:
        """The lowest-numbered set with an ALT (AAL is additive: every set sums to the portfolio's)."""
        return next((s for s in self.summary_sets(perspective) if s.aal_sampled is not None
                     or s.aal_analytical is not None), None)

    def portfolio(self, perspective: str) -> SummarySet | None:
        """The lowest-numbered portfolio-level set with EP curves (summary set 1 in the usual settings)."""
        return next((s for s in self.summary_sets(perspective) if s.is_portfolio and (s.oep or s.aep)), None)

    def curve(self, perspective: str, ep_type: int) -> EpCurve | None:
        """The portfolio OEP / AEP curve of ``perspective``, or None."""
        s = self.portfolio(perspective)
        return s.portfolio_curve(ep_type) if s else None


# ---------------------------------------------------------------------------------------------
# reading


def is_report_file(name: str) -> bool:
    """True for the ORD files :func:`read_results` reads (ALT, EPT, summary-info), by file name."""
    return bool(_FILE.match(name))


def _read_table(path: Path) -> pd.DataFrame:
    if path.name.endswith(".parquet"):
        return pd.read_parquet(path)
    return pd.read_csv(path)


def _need(df: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {missing}; expected an ORD file with columns "
                         f"{list(columns)} (see the ORD spec)")


def _settings_fields(settings: dict[str, Any] | None, perspective: str, set_id: int) -> tuple[str, ...] | None:
    """The set's ``oed_fields`` from analysis settings, or None when the settings do not describe it."""
    if not settings:
        return None
    for entry in settings.get(f"{perspective}_summaries") or []:
        if isinstance(entry, dict) and int(entry.get("id", 0)) == set_id:
            fields = entry.get("oed_fields") or []
            return (fields,) if isinstance(fields, str) else tuple(fields)
    return None


def _curves(ept: pd.DataFrame, ep_type: int) -> dict[int, EpCurve]:
    out: dict[int, EpCurve] = {}
    rows = ept[(ept["EPType"] == ep_type) & (ept["ReturnPeriod"] > 0)]
    for sid, g in rows.groupby("SummaryId", sort=True):
        # one loss per return period (the largest, should a file repeat one), ascending
        by_rp = g.groupby("ReturnPeriod", sort=True)["Loss"].max()
        out[int(sid)] = EpCurve(tuple(float(r) for r in by_rp.index), tuple(float(v) for v in by_rp.values))
    return out


def _find_output_dir(output_dir: Path) -> Path:
    """``output_dir``, or its ``output/`` sub-folder when the ORD files are there (an extracted tarball)."""
    def has_files(d: Path) -> bool:
        return d.is_dir() and any(_FILE.match(p.name) for p in d.iterdir())

    if has_files(output_dir):
        return output_dir
    if has_files(output_dir / "output"):
        return output_dir / "output"
    raise FileNotFoundError(f"no ORD ALT/EPT files (<gul|il|ri>_S<n>_<palt|ept>.csv|parquet) in {output_dir} "
                            f"or its output/ folder; run the analysis with ALT or EPT outputs turned on")


def read_results(output_dir: str | Path, analysis_settings: dict[str, Any] | None = None) -> Results:
    """Read the AAL and EP curves of an ORD output folder.

    Parameters
    ----------
    output_dir : path
        A folder of ORD files, or a folder holding ``output/`` (an extracted output tarball).
    analysis_settings : dict, optional
        The analysis settings: their ``<perspective>_summaries`` tell which sets are portfolio
        level when the folder has no summary-info files.

    Raises
    ------
    FileNotFoundError
        No ALT or EPT file in the folder.
    ValueError
        A file lacks an ORD column.
    """
    folder = _find_output_dir(Path(output_dir))
    found: dict[tuple[str, int], dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        m = _FILE.match(path.name)
        if m:
            tables = found.setdefault((m.group(1), int(m.group(2))), {})
            tables.setdefault(m.group(3), path)  # csv before csv.gz before parquet (sorted names)

    sets: dict[tuple[str, int], SummarySet] = {}
    for (perspective, set_id), tables in sorted(found.items()):
        ids: set[int] = set()
        fields = _settings_fields(analysis_settings, perspective, set_id)
        info_rows = None
        if "summary-info" in tables:
            info = _read_table(tables["summary-info"])
            _need(info, ["summary_id"], tables["summary-info"])
            ids.update(int(i) for i in info["summary_id"])
            info_rows = len(info)
            fields = tuple(c for c in info.columns if c not in _INFO_NON_FIELDS)

        aal_analytical = aal_sampled = None
        alt_name = next((t for t in _ALT_TABLES if t in tables), None)
        if alt_name:
            alt = _read_table(tables[alt_name])
            _need(alt, ["SummaryId", "SampleType", "MeanLoss"], tables[alt_name])
            ids.update(int(i) for i in alt["SummaryId"])
            sums = alt.groupby("SampleType")["MeanLoss"].sum()
            aal_analytical = float(sums[1]) if 1 in sums.index else None
            aal_sampled = float(sums[2]) if 2 in sums.index else None

        ep_calc = None
        oep: dict[int, EpCurve] = {}
        aep: dict[int, EpCurve] = {}
        if "ept" in tables:
            ept = _read_table(tables["ept"])
            _need(ept, ["SummaryId", "EPCalc", "EPType", "ReturnPeriod", "Loss"], tables["ept"])
            ids.update(int(i) for i in ept["SummaryId"])
            calcs = sorted(int(c) for c in ept["EPCalc"].unique())
            if calcs:
                ep_calc = FULL_UNCERTAINTY if FULL_UNCERTAINTY in calcs else calcs[0]
                chosen = ept[ept["EPCalc"] == ep_calc]
                oep, aep = _curves(chosen, OEP), _curves(chosen, AEP)

        sets[(perspective, set_id)] = SummarySet(
            perspective=perspective, set_id=set_id, summary_ids=tuple(sorted(ids)), oed_fields=fields,
            aal_analytical=aal_analytical, aal_sampled=aal_sampled, ep_calc=ep_calc, oep=oep, aep=aep,
            files=tuple(p.name for p in tables.values()), info_rows=info_rows)
    return Results(output_dir=folder, sets=sets)


# ---------------------------------------------------------------------------------------------
# table


@dataclass(frozen=True)
class Row:
    """One row of the results table: a label and a value per perspective (None = n/a)."""

    label: str
    values: dict[str, float | None]


def results_rows(results: Results, return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS) -> list[Row]:
    """AAL (sampled, analytical), then OEP and AEP at each return period, per perspective present."""
    persp = results.perspectives()
    sampled: dict[str, float | None] = {}
    analytical: dict[str, float | None] = {}
    for p in persp:
        s = results.aal_set(p)
        sampled[p] = s.aal_sampled if s else None
        analytical[p] = s.aal_analytical if s else None
    rows = [Row("AAL", sampled), Row("AAL (analytical)", analytical)]
    for name, ep_type in (("OEP", OEP), ("AEP", AEP)):
        curves = {p: results.curve(p, ep_type) for p in persp}
        for rp in return_periods:
            values: dict[str, float | None] = {}
            for p in persp:
                curve = curves[p]
                values[p] = curve.loss_at(rp) if curve else None
            rows.append(Row(f"{name} {_rp_label(rp)}y", values))
    return rows


def _rp_label(rp: float) -> str:
    return f"{rp:g}"


def _money(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:,.0f}"


def _ep_note(results: Results) -> str:
    calcs = sorted({s.ep_calc for s in results.sets.values() if s.ep_calc is not None})
    names = ", ".join(f"EPCalc {c} ({EP_CALC_NAMES.get(c, 'unknown')})" for c in calcs)
    return f"EP curves: {names}" if names else "EP curves: no EPT file"


def results_table(results: Results, return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS) -> str:
    """A plain-text table of AAL and OEP/AEP losses at ``return_periods`` for the portfolio.

    Columns are the perspectives present (GUL, IL, RI net). A loss outside the return
    periods of the EPT, or of a perspective without a portfolio-level set, reads ``n/a``.
    """
    persp = results.perspectives()
    if not persp:
        raise ValueError(f"no gul/il/ri results in {results.output_dir}")
    rows = results_rows(results, return_periods)
    cells = [[r.label] + [_money(r.values[p]) for p in persp] for r in rows]
    header = [""] + [LABELS[p] for p in persp]
    widths = [max(len(c[i]) for c in cells + [header]) for i in range(len(header))]
    widths = [widths[0]] + [max(w, 14) for w in widths[1:]]

    def line(c: list[str]) -> str:
        return "  ".join([c[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(c[1:], widths[1:], strict=True)])

    out = [line(header), "  ".join("-" * w for w in widths)]
    for i, c in enumerate(cells):
        if i in (2, 2 + len(return_periods)):  # a rule before the OEP and the AEP blocks
            out.append("")
        out.append(line(c))
    out.append("")
    out.append(f"AAL = mean over samples (SampleType 2); {_ep_note(results)}; losses interpolated linearly "
               f"in the return period, n/a outside the curve")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# SVG chart

#: Curve colours by perspective; OEP solid, AEP dashed.
COLOURS = {"gul": "#1f6fb4", "il": "#e0700e", "ri": "#2a9d3a"}


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag  # pragma: no cover


def _short(v: float) -> str:
    """Compact axis label: 1.5M, 250k, 0."""
    a = abs(v)
    for div, suffix in ((1e9, "bn"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def ep_chart_svg(results: Results, width: int = 720, height: int = 420,
                 title: str = "Portfolio EP curves") -> str:
    """A self-contained SVG of the portfolio OEP and AEP curves of each perspective.

    Loss (y, linear) against return period (x, log10). One ``<path class="curve">`` per
    curve (``data-perspective``, ``data-ep``); axes, grid, ticks and legend use other
    elements. Generic font families only: nothing to fetch.
    """
    curves: list[tuple[str, str, EpCurve]] = []
    for p in results.perspectives():
        for name, ep_type in (("OEP", OEP), ("AEP", AEP)):
            c = results.curve(p, ep_type)
            if c and c.return_periods:
                curves.append((p, name, c))

    left, right, top, bottom = 78, 150, 36, 52
    pw, ph = width - left - right, height - top - bottom
    esc = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" role="img" '
             f'aria-label="{esc(title)}">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
             f'<text x="{left + pw / 2:.1f}" y="20" text-anchor="middle" font-size="14" '
             f'font-weight="bold">{esc(title)}</text>']
    if not curves:
        parts.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph / 2:.1f}" text-anchor="middle">'
                     f'no portfolio-level EP curve in these results</text></svg>')
        return "\n".join(parts)

    rps = [r for _, _, c in curves for r in c.return_periods]
    losses = [v for _, _, c in curves for v in c.losses]
    x0 = 10 ** math.floor(math.log10(min(rps)))
    x1 = 10 ** math.ceil(math.log10(max(rps)))
    if x1 <= x0:
        x1 = x0 * 10
    ymax = max(max(losses), 0.0)
    step = _nice_step(ymax) if ymax > 0 else 1.0
    y1 = step * math.ceil(ymax / step) if ymax > 0 else 1.0
    lx0, lx1 = math.log10(x0), math.log10(x1)

    def sx(rp: float) -> float:
        return left + (math.log10(rp) - lx0) / (lx1 - lx0) * pw

    def sy(loss: float) -> float:
        return top + ph - (loss / y1) * ph

    # grid, ticks and labels
    decade = x0
    while decade <= x1 * 1.0001:
        x = sx(decade)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#dddddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">{decade:g}</text>')
        for minor in (2, 5):
            m = decade * minor
            if m < x1:
                parts.append(f'<line x1="{sx(m):.1f}" y1="{top + ph}" x2="{sx(m):.1f}" y2="{top + ph + 4}" '
                             f'stroke="#555555"/>')
        decade *= 10
    k = 0
    while k * step <= y1 * 1.0001:
        v = k * step
        y = sy(v)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#dddddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_short(v)}</text>')
        k += 1
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333333"/>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 12}" text-anchor="middle">'
                 f'Return period (years, log scale)</text>')
    parts.append(f'<text x="16" y="{top + ph / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 16 {top + ph / 2:.1f})">Loss</text>')

    # curves and legend
    for i, (p, name, c) in enumerate(curves):
        d = " ".join(f"{'M' if j == 0 else 'L'}{sx(r):.2f},{sy(v):.2f}"
                     for j, (r, v) in enumerate(zip(c.return_periods, c.losses, strict=True)))
        dash = ' stroke-dasharray="6 4"' if name == "AEP" else ""
        parts.append(f'<path class="curve" data-perspective="{p}" data-ep="{name}" d="{d}" fill="none" '
                     f'stroke="{COLOURS[p]}" stroke-width="2"{dash}><title>{esc(LABELS[p])} {name}</title></path>')
        ly = top + 10 + i * 20
        lx = left + pw + 14
        parts.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 26}" y2="{ly}" stroke="{COLOURS[p]}" '
                     f'stroke-width="2"{dash}/>')
        parts.append(f'<text x="{lx + 32}" y="{ly + 4}">{esc(LABELS[p])} {name}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table.results { border-collapse: collapse; margin: 0.5em 0 1em; }
table.results th, table.results td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; }
table.results td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.results tr.block td { border-top: 2px solid #999; }
p.note { color: #555; font-size: 0.9em; }
"""


def report_sections(results: Results, return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS) -> str:
    """The report's body as an HTML fragment: portfolio table, AAL per summary set, EP chart.

    Used by :func:`html_report` and by the web UI's analysis page.
    """
    esc = html.escape
    persp = results.perspectives()
    rows = results_rows(results, return_periods)
    out = ['<h2>Portfolio losses</h2>', '<table class="results"><thead><tr><th></th>']
    out += [f"<th>{esc(LABELS[p])}</th>" for p in persp]
    out.append("</tr></thead><tbody>")
    for i, r in enumerate(rows):
        cls = ' class="block"' if i in (2, 2 + len(return_periods)) else ""
        out.append(f"<tr{cls}><th>{esc(r.label)}</th>"
                   + "".join(f'<td class="num">{_money(r.values[p])}</td>' for p in persp) + "</tr>")
    out.append("</tbody></table>")
    out.append(f'<p class="note">AAL = mean over samples (SampleType 2). {esc(_ep_note(results))}. '
               f"Losses between return periods are interpolated linearly; n/a outside the curve.</p>")

    out.append('<h2>AAL by perspective and summary set</h2><table class="results aal"><thead><tr>'
               "<th>Perspective</th><th>Summary set</th><th>Summary ids</th><th>Level</th>"
               "<th>AAL (sampled)</th><th>AAL (analytical)</th></tr></thead><tbody>")
    for p in persp:
        for s in results.summary_sets(p):
            level = "portfolio" if s.is_portfolio else (", ".join(s.oed_fields) if s.oed_fields else "?")
            out.append(f"<tr><td>{esc(LABELS[p])}</td><td>{s.set_id}</td><td class=\"num\">{len(s.summary_ids)}</td>"
                       f"<td>{esc(level)}</td><td class=\"num\">{_money(s.aal_sampled)}</td>"
                       f"<td class=\"num\">{_money(s.aal_analytical)}</td></tr>")
    out.append("</tbody></table>")
    out.append("<h2>EP curves</h2>")
    out.append(ep_chart_svg(results))
    return "\n".join(out)


def html_report(results: Results, title: str = "Perilflow results",
                return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS, subtitle: str | None = None) -> str:
    """One self-contained HTML page: the table, the AAL per perspective and the SVG chart."""
    esc = html.escape
    sub = f'<p class="note">{esc(subtitle)}</p>' if subtitle else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{esc(title)}</h1>{sub}\n{report_sections(results, return_periods)}\n</body></html>\n")


def write_html_report(results: Results, path: str | Path, title: str = "Perilflow results",
                      return_periods: Sequence[float] = DEFAULT_RETURN_PERIODS,
                      subtitle: str | None = None) -> Path:
    """Write :func:`html_report` to ``path`` atomically (temporary file, then rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = html_report(results, title, return_periods, subtitle)
    return atomic_write(path, lambda handle: handle.write(text), binary=False)
