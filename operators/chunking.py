"""How many chunks a lookup or a loss run is split into: OasisPlatform's ModelChunkingOptions.

A model sets its chunking options; an analysis may override any of them. FIXED_CHUNKS asks
for a number of chunks, DYNAMIC_CHUNKS for a number of locations (lookup) or events (losses)
per chunk. Either way the count is capped by ``dynamic_chunks_max`` and by the number of
locations or events, and is at least 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

FIXED = "FIXED_CHUNKS"
DYNAMIC = "DYNAMIC_CHUNKS"
STRATEGIES = (FIXED, DYNAMIC)


class ChunkingError(ValueError):
    """Chunking options that are not valid (the message names the field and the fix)."""


@dataclass(frozen=True)
class ChunkingOptions:
    """OasisPlatform's ``ModelChunkingOptions`` (same field names and defaults)."""

    lookup_strategy: str = FIXED
    loss_strategy: str = FIXED
    fixed_lookup_chunks: int = 1
    fixed_analysis_chunks: int = 1
    dynamic_locations_per_lookup: int = 10_000
    dynamic_events_per_analysis: int = 1
    dynamic_chunks_max: int = 200

    @classmethod
    def from_dicts(cls, *layers: Mapping[str, Any] | None) -> ChunkingOptions:
        """Options from the defaults overlaid by each mapping in turn (model, then analysis)."""
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for layer in layers:
            for key, value in (layer or {}).items():
                if key not in names:
                    raise ChunkingError(f"chunking option {key!r} is unknown; use one of {sorted(names)}")
                if value is not None:
                    values[key] = value
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        for name in ("lookup_strategy", "loss_strategy"):
            if getattr(self, name) not in STRATEGIES:
                raise ChunkingError(f"chunking option {name} is {getattr(self, name)!r}; use one of {list(STRATEGIES)}")
        for f in fields(self):
            if f.name.startswith(("fixed_", "dynamic_")):
                value = getattr(self, f.name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ChunkingError(f"chunking option {f.name} is {value!r}; it must be a positive integer")

    def lookup_chunks(self, locations: int) -> int:
        """Number of lookup chunks for ``locations`` location rows."""
        if self.lookup_strategy == FIXED:
            n = min(self.fixed_lookup_chunks, locations)
        else:
            n = min(math.ceil(locations / self.dynamic_locations_per_lookup), self.dynamic_chunks_max)
        return max(1, min(n, self.dynamic_chunks_max))

    def loss_chunks(self, events: int | None) -> int:
        """Number of loss chunks for ``events`` events (None: unknown, only FIXED_CHUNKS can be used)."""
        if self.loss_strategy == FIXED:
            n = self.fixed_analysis_chunks if events is None else min(self.fixed_analysis_chunks, events)
        else:
            if events is None:
                raise ChunkingError("loss_strategy DYNAMIC_CHUNKS needs the number of events: set number_of_events "
                                    "for the event set in the model settings, or use FIXED_CHUNKS")
            n = math.ceil(events / self.dynamic_events_per_analysis)
        return max(1, min(n, self.dynamic_chunks_max))


def count_events(analysis_settings: Mapping[str, Any], model_settings: Mapping[str, Any] | None) -> int | None:
    """Events of a run as OasisPlatform counts them for dynamic chunking.

    ``analysis_settings.event_ids`` when it lists more than one event; otherwise the
    ``number_of_events`` of the chosen event set in the model settings; None when neither says.
    """
    ids = analysis_settings.get("event_ids") or []
    if len(ids) > 1:
        return len(ids)
    chosen = str((analysis_settings.get("model_settings") or {}).get("event_set", "") or "")
    model_settings = model_settings or {}
    for entry in (model_settings.get("model_settings") or {}).get("event_set", {}).get("options", []) or []:
        default = (model_settings.get("model_settings") or {}).get("event_set", {}).get("default")
        if str(entry.get("id")) == (chosen or str(default)) and entry.get("number_of_events"):
            return int(entry["number_of_events"])
    return None
