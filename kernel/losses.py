"""The losses stage: a run directory, event chunks, and the merge into ORD outputs.

This is what the Airflow tasks (and ``perilflow run``) call, one function per step:

1. :func:`prepare_run_directory` -- copy the Oasis input files into ``<run>/input`` and
   resolve every setting once into ``<run>/run_settings.json`` (samples, alloc rules, event
   set, which perspectives are on, where the model data is);
2. :func:`generate_losses_chunk` -- events ``chunk i of N``: ground-up sampling, the
   insured FM, each reinsurance pass, and the mergeable partial ORD results of every
   perspective into ``<run>/work/chunk-<i>``; in memory, event block by event block;
3. :func:`generate_losses_output` -- merge every chunk's partial results into ``<run>/output``.

Random numbers are keyed by (event, group) and the merge orders everything by event, so
the outputs are byte-identical whatever the number of chunks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

RUN_SETTINGS = "run_settings.json"
#: loss columns of a record: sidx -5, -4, -3, -2, -1, then samples
SPECIALS = 5
#: the FM carries max loss (-5), TIV (-3), mean (-1) and the samples; -4 and -2 are not FM quantities
FM_COLUMNS_OF_GUL = (0, 2, 4)
#: loss records are float32, the reference's stream type: ground-up losses are float32 values, and each
#: FM pass computes in float64 and rounds its outputs once, as the reference's next pass (and every
#: summary) reads them. Half of float64's memory: on PiWind x8 at 100 samples a block of its largest
#: event holds 0.3 GB of insured and reinsurance records instead of 0.6 GB.
RECORD_DTYPE = np.float32

_INPUT_FILES = ("items", "coverages", "correlations", "fm_programme", "fm_policytc", "fm_profile", "fm_profile_step",
                "fm_xref", "gul_summary_map", "fm_summary_map")


@dataclass
class RunSettings:
    """Everything a chunk needs to know, resolved once by :func:`prepare_run_directory`."""

    model_data_dir: str
    event_set: str | None
    occurrence_id: str | None
    number_of_samples: int
    gul_alloc_rule: int = 1
    il_alloc_rule: int = 2
    ri_alloc_rule: int = 3
    gul_threshold: float = 0.0
    random_generator: int = 2
    seed: int = 0
    effective_damageability: bool = False
    gul_output: bool = True
    il_output: bool = False
    ri_output: bool = False
    event_block: int = 1024          # events whose footprint is scanned at once to plan blocks
    block_bytes: int = 512 * 2**20   # loss records held at once (see _Run.event_blocks)

    @classmethod
    def read(cls, run_dir: Path) -> RunSettings:
        return cls(**json.loads((Path(run_dir) / RUN_SETTINGS).read_text()))


def prepare_run_directory(oasis_files_dir: str | os.PathLike, run_dir: str | os.PathLike, *,
                          model_data_dir: str | os.PathLike, analysis_settings: dict[str, Any],
                          model_settings: dict[str, Any] | None = None, gul_alloc_rule: int = 1,
                          il_alloc_rule: int = 2, ri_alloc_rule: int = 3) -> RunSettings:
    """Create ``run_dir`` with the input files, the analysis settings and the resolved run settings."""
    from perilflow.kernel.model.data import select_file_ids
    from perilflow.kernel.oasis.files import read_ri_layers
    from perilflow.kernel.outputs.settings import load_analysis_settings

    source = Path(oasis_files_dir)
    run = Path(run_dir)
    analysis = load_analysis_settings(analysis_settings)
    model_settings = model_settings or {}
    samples = analysis.get("number_of_samples")
    if samples is None:
        samples = model_settings.get("model_default_samples")
    if samples is None or int(samples) < 0:
        raise ValueError("analysis settings: number_of_samples is missing (and the model gives no "
                         "model_default_samples); set number_of_samples")
    event_set, occurrence_id = select_file_ids(analysis, model_settings)
    has_il = any((source / f"fm_programme.{ext}").exists() for ext in ("bin", "csv"))
    ri_passes = read_ri_layers(source)
    settings = RunSettings(
        model_data_dir=str(Path(model_data_dir).resolve()),
        event_set=event_set, occurrence_id=occurrence_id, number_of_samples=int(samples),
        gul_alloc_rule=gul_alloc_rule, il_alloc_rule=il_alloc_rule, ri_alloc_rule=ri_alloc_rule,
        gul_threshold=float(analysis.get("gul_threshold", 0) or 0),
        random_generator=int((analysis.get("model_settings") or {}).get("random_generator", 2)),
        seed=int((analysis.get("model_settings") or {}).get("random_seed", 0) or 0),
        effective_damageability=bool((analysis.get("model_settings") or {}).get("effective_damageability", False)),
        gul_output=bool(analysis.get("gul_output", False)),
        il_output=bool(analysis.get("il_output", False)) and has_il,
        ri_output=bool(analysis.get("ri_output", False)) and has_il and bool(ri_passes),
    )
    if analysis.get("il_output") and not has_il:
        raise ValueError(f"analysis settings ask for il_output but {source} has no fm files; "
                         "generate the input files with an account file, or set il_output false")
    if analysis.get("ri_output") and not ri_passes:
        raise ValueError(f"analysis settings ask for ri_output but {source} has no ri_layers.json; "
                         "generate the input files with the reinsurance files, or set ri_output false")

    staging = run.with_name(f".{run.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "input").mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.stem in _INPUT_FILES or path.name == "ri_layers.json":
            shutil.copy2(path, staging / "input" / path.name)
    for ri in ri_passes:
        shutil.copytree(ri.directory, staging / "input" / Path(ri.directory).name)
    (staging / "analysis_settings.json").write_text(json.dumps(analysis, indent=2))
    (staging / RUN_SETTINGS).write_text(json.dumps(asdict(settings), indent=2))
    shutil.rmtree(run, ignore_errors=True)
    staging.rename(run)
    return settings


def chunk_events(events: np.ndarray, chunk_index: int, n_chunks: int) -> np.ndarray:
    """Events of chunk ``chunk_index`` (0-based) of ``n_chunks``: contiguous slices of the sorted event ids."""
    if not 0 <= chunk_index < n_chunks:
        raise ValueError(f"chunk index {chunk_index} is outside 0..{n_chunks - 1}")
    return np.array_split(np.sort(np.asarray(events)), n_chunks)[chunk_index]


class _Run:
    """What every event block of a run needs: model, items, FM plans, output specs."""

    def __init__(self, run_dir: Path, compute: bool = True):
        """``compute=False`` skips what only the event blocks need (items, FM plans): the merge step."""
        from perilflow.kernel.fm.run import load_plan
        from perilflow.kernel.gul.run import prepare_items, read_gul_inputs
        from perilflow.kernel.model.data import load_model_data
        from perilflow.kernel.oasis.files import read_ri_layers
        from perilflow.kernel.outputs import Occurrence, OutputSpec, OutputStatic

        self.dir = run_dir
        self.settings = s = RunSettings.read(run_dir)
        inputs = run_dir / "input"
        analysis = json.loads((run_dir / "analysis_settings.json").read_text())
        items, coverages, correlations = read_gul_inputs(inputs)
        order = np.argsort(items["item_id"], kind="stable")
        if not np.array_equal(items["item_id"][order], np.arange(1, items.shape[0] + 1)):
            raise ValueError(f"{inputs}: item ids must be 1..N")
        self.item_ids = items["item_id"].astype(np.int64)
        self.model = load_model_data(s.model_data_dir, event_set=s.event_set, occurrence_id=s.occurrence_id,
                                     vulnerability_ids=np.unique(items["vulnerability_id"]))
        self.items = prepare_items(self.model, items, coverages, correlations) if compute else None
        self.il_plan = load_plan(inputs, s.il_alloc_rule) if compute and (s.il_output or s.ri_output) else None
        self.ri_plans = ([load_plan(ri.directory, s.ri_alloc_rule, with_items=False) for ri in read_ri_layers(inputs)]
                         if compute and s.ri_output else [])
        occ = self.model.occurrence
        # period weights only when the model has a periods file: without one the reference's EP
        # curves are unweighted (uniform 1/P weights would change which rows it writes)
        has_periods = any((Path(s.model_data_dir) / f"periods.{ext}").exists() for ext in ("bin", "csv"))
        periods = self.model.periods if has_periods else None
        weights = None if periods is None else periods["weighting"].astype(np.float64)
        self.static = OutputStatic(
            occurrence=Occurrence.build(occ.records["event_id"], occ.records["period_no"], occ.records["occ_date_id"],
                                        occ.no_of_periods, occ.granular, weights),
            return_periods=self.model.return_periods, quantiles=self.model.quantiles,
            event_rates=self.model.event_rates,
        )
        fm_map = inputs / "fm_summary_map.csv"
        self.specs = {}
        if s.gul_output:
            self.specs["gul"] = OutputSpec.from_settings(analysis, "gul", inputs / "gul_summary_map.csv",
                                                         number_of_samples=s.number_of_samples,
                                                         xref_map=fm_map if fm_map.exists() else None)
        if s.il_output:
            self.specs["il"] = OutputSpec.from_settings(analysis, "il", fm_map, number_of_samples=s.number_of_samples)
        if s.ri_output:
            self.specs["ri"] = OutputSpec.from_settings(analysis, "ri", fm_map, number_of_samples=s.number_of_samples)
        self.specs = {p: spec for p, spec in self.specs.items() if spec.enabled}

    def event_blocks(self, events: np.ndarray):
        """Blocks of whole events holding at most ``settings.block_bytes`` of loss records.

        A record takes 4 x (5 + N) bytes (float32) in each of the few arrays a block passes
        through (ground up, FM input, insured, reinsurance), so the block's record budget bounds
        memory whatever the portfolio size or number of samples.
        """
        from perilflow.kernel.gul.run import split_events

        s = self.settings
        record = np.dtype(RECORD_DTYPE).itemsize * (SPECIALS + s.number_of_samples)
        max_records = max(1, s.block_bytes // (record * 5))
        window = max(1, s.event_block)
        for start in range(0, events.shape[0], window):
            for ids in split_events(self.model, self.items, events[start:start + window], max_records):
                yield ids.astype(np.int32)

    def block(self, event_ids: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Losses of one event block per perspective: (event_ptr, ids, losses[:, 5 + N]), all held at once."""
        return dict(self.perspectives(event_ids))

    def perspectives(self, event_ids: np.ndarray):
        """Losses of one event block, one perspective after the other: ground up, insured, reinsurance.

        Yields ``(name, (event_ptr, ids, losses[:, 5 + N]))``. Each perspective is computed from the
        one before, and this generator lets go of a perspective's records as soon as the next one
        is computed: a caller that drops what it got before asking for the next holds at most two
        perspectives' records at once (a block of PiWind x8's largest event at 100 samples: 0.3 GB
        of insured and reinsurance records, not 0.4 GB with the ground-up ones as well).
        """
        from perilflow.kernel.gul.run import sample_event_block

        s = self.settings
        event_ptr, item_row, gul = sample_event_block(
            self.model, self.items, None, event_ids, s.number_of_samples, alloc_rule=s.gul_alloc_rule,
            effective_damageability=s.effective_damageability, random_generator=s.random_generator,
            gul_threshold=s.gul_threshold, seed=s.seed, dtype=RECORD_DTYPE)
        yield "gul", (event_ptr, self.item_ids[item_row], gul)
        passes = self._fm(event_ptr, item_row, gul, None)
        del event_ptr, item_row, gul   # the passes own the ground-up records now
        yield from passes

    def fm_passes(self, event_ptr: np.ndarray, item_row: np.ndarray, gul: np.ndarray,
                  threads: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The insured FM and the reinsurance passes of one block of ground-up records (none without IL)."""
        return dict(self._fm(event_ptr, item_row, gul, threads))

    def _fm(self, ptr: np.ndarray, rows: np.ndarray, losses: np.ndarray, threads: int | None):
        """Yield the insured records, then those of the last reinsurance pass; each pass reads the one
        before, whose records are let go (rebound) as soon as the pass returns."""
        from perilflow.kernel.fm.compute import run_fm_events

        if self.il_plan is None:
            return
        # the FM computes columns [-5, -3, -1, samples] of the records, read and written in place
        cols = _fm_column_map(losses.shape[1] - SPECIALS + len(FM_COLUMNS_OF_GUL))
        width = losses.shape[1]
        for k, plan in enumerate([self.il_plan, *self.ri_plans]):
            # the FM's work space gets the block's record budget too: wider blocks of events' columns
            # cost memory, narrower ones time (see compute.WORK_BYTES)
            ptr, index, losses = run_fm_events(plan, ptr, rows, losses, net=k > 0, columns=cols, out_columns=cols,
                                               out_width=width, threads=threads, work_bytes=self.settings.block_bytes)
            ids = plan.output_id[index].astype(np.int64)
            rows = ids - 1   # the next pass's items are this one's outputs
            del index
            if k == 0:
                yield "il", (ptr, ids, losses)
            elif k == len(self.ri_plans):
                yield "ri", (ptr, ids, losses)
            del ids


def load_run(run_dir: str | os.PathLike) -> _Run:
    """What every chunk of ``run_dir`` needs (model data, items, FM plans, output specs), loaded once:
    pass it as ``run`` to :func:`generate_losses_chunk` for each chunk a process computes."""
    return _Run(Path(run_dir))


def _fm_column_map(n_fm_columns: int) -> np.ndarray:
    """Record-layout column of each FM column: [-5, -3, -1, samples] -> [-5, -4, -3, -2, -1, samples]."""
    return np.concatenate((np.asarray(FM_COLUMNS_OF_GUL, dtype=np.int64),
                           np.arange(SPECIALS, SPECIALS + n_fm_columns - len(FM_COLUMNS_OF_GUL), dtype=np.int64)))


def generate_losses_chunk(run_dir: str | os.PathLike, chunk_index: int, n_chunks: int,
                          block_bytes: int | None = None, *, run: _Run | None = None,
                          on_block: Callable[[int, np.ndarray, dict[str, tuple[int, int]]], None] | None = None,
                          ) -> Path:
    """Compute events ``chunk_index`` of ``n_chunks`` and write their partial results; returns the work folder.

    ``block_bytes`` overrides the run's budget of loss records held at once (e.g. a share of it for
    each of several chunk processes running side by side); the outputs do not depend on it.
    ``run`` is ``run_dir`` already loaded, and ``on_block(b, event_ids, sizes)`` is called after each
    block's partial results are written, with the records and bytes of each perspective
    (``benchmarks.chunk_memory``).
    """
    from perilflow.kernel.fm.compute import release_work_space
    from perilflow.kernel.memory import release_free_memory
    from perilflow.kernel.outputs import accumulate_chunk

    run_dir = Path(run_dir)
    run = run or _Run(run_dir)
    release_free_memory()   # what reading the inputs and building the plans left free (see kernel.memory)
    if block_bytes is not None:
        if block_bytes < 1:
            raise ValueError(f"block_bytes {block_bytes}: give a positive number of bytes")
        run.settings = dataclasses.replace(run.settings, block_bytes=int(block_bytes))
    events = chunk_events(run.model.events, chunk_index, n_chunks)
    work = run_dir / "work" / f"chunk-{chunk_index}"
    staging = work.with_name(f".{work.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for b, ids in enumerate(run.event_blocks(events)):
        sizes: dict[str, tuple[int, int]] = {}
        for perspective, records in run.perspectives(ids):
            ptr, rec_ids, losses = records
            if perspective in run.specs:
                # partial results are summarised per block, so a chunk never holds more than a block of records
                accumulate_chunk(run.specs[perspective], run.static, ids, ptr, rec_ids, losses,
                                 staging / perspective / f"block-{b:06d}")
            sizes[perspective] = (losses.shape[0], sum(a.nbytes for a in records))
            del records, ptr, rec_ids, losses   # before the next perspective is computed (see _Run.perspectives)
        if on_block is not None:
            on_block(b, ids, sizes)
    release_work_space()
    shutil.rmtree(work, ignore_errors=True)
    staging.rename(work)
    return work


def generate_losses_output(run_dir: str | os.PathLike, n_chunks: int) -> Path:
    """Merge the partial results of chunks 0..n_chunks-1 into ``<run>/output``; returns that folder."""
    from perilflow.kernel.outputs import merge_outputs

    run_dir = Path(run_dir)
    run = _Run(run_dir, compute=False)
    work = [run_dir / "work" / f"chunk-{i}" for i in range(n_chunks)]
    missing = [str(w) for w in work if not w.is_dir()]
    if missing:
        raise ValueError(f"chunk results missing: {missing}; run generate-losses-chunk for them first")
    output = run_dir / "output"
    staging = output.with_name(".output.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for perspective, spec in run.specs.items():
        blocks = [b for w in work for b in sorted((w / perspective).glob("block-*"))]
        merge_outputs(spec, run.static, blocks, staging)
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
    return output

