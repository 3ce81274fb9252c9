"""Tables of records that ``predict`` and ``recommend`` print, write and emit as JSON.

A table is a dictionary of equally long columns (``{"user": [...], "item": [...],
"prediction": array}``, made by :func:`dlfm.serving.queries.predict_table` and
:meth:`~dlfm.models.base.Recommender.recommend_batch`); :func:`~dlfm.serving.queries.records`
turns it into the list of JSON records that ``--json`` writes, :func:`write_table` into CSV,
or JSON lines when the file name ends in ``.jsonl``, written atomically (or to standard
output for ``-``).
"""

from __future__ import annotations

import csv
import json
from typing import Any

from dlfm.cli.common import json_default, result_stream
from dlfm.serving.queries import Table, records


def write_table(path: str, table: Table) -> None:
    """Write ``table`` to ``path``: CSV with a header, or JSON lines (one record per line) when
    ``path`` ends in ``.jsonl``; ``-`` is standard output (CSV)."""
    if path == "-":
        _write(result_stream(), table, jsonl=False)
        return
    from dlfm.persistence import atomic_write

    with atomic_write(path, "w") as handle:
        _write(handle, table, jsonl=path.lower().endswith(".jsonl"))


def _write(handle: Any, table: Table, *, jsonl: bool) -> None:
    rows = records(table)
    if jsonl:
        for row in rows:
            handle.write(json.dumps(row, default=json_default) + "\n")
        return
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(list(table))
    for row in rows:
        writer.writerow([_cell(v) for v in row.values()])


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
