"""``StatsDict``: the type of ``Stats.as_dict()``."""

from __future__ import annotations

from typing import Dict, TypedDict


class StatsDict(TypedDict):
    """Every counter of an ``icr_app.Stats`` (``stats.as_dict()``), for JSON or a metrics
    exporter: see ``Stats`` for what each counts."""

    hits: int
    misses: int
    mints: int
    refreshes: int
    failures: Dict[str, int]
    waits: int
    shared_hits: int
    shared_fallbacks: int
    lookups: int
    shared_lookups: int
