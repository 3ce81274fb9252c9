"""Tables of records that ``predict`` and ``recommend`` print, write and emit as JSON.

A table is a dictionary of equally long columns (``{"user": [...], "item": [...],
"prediction": array}``); :func:`records` turns it into the list of JSON records that
``--json`` writes, :func:`write_table` into CSV, or JSON lines when the file name ends in
``.jsonl``, written atomically (or to standard output for ``-``).
"""

from __future__ import annotations

import csv
import json
import re
from typing import Any, Mapping, Sequence

import numpy as np

from dlfm.cli.common import json_default, result_stream
from dlfm.data.ratings import Vocabulary

_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")

Table = Mapping[str, Sequence[Any] | np.ndarray]


def display_ids(vocab: Vocabulary, texts: Sequence[str], indices: np.ndarray) -> list[Any]:
    """Ids as they are in the data: the vocabulary's own value for a known id (the integer
    196 for ``"196"`` in an integer vocabulary), the text as given for an unknown one (an
    integer when the vocabulary's ids are integers and the text is one)."""
    known = vocab.raw(np.maximum(indices, 0)) if len(indices) else []
    out: list[Any] = []
    for text, index, value in zip(texts, indices.tolist(), known):
        if index >= 0:
            out.append(value)
        elif vocab.kind == "int" and _CANONICAL_INT.fullmatch(text) and -(2**63) <= int(text) < 2**63:
            out.append(int(text))
        else:
            out.append(text)
    return out


def records(table: Table) -> list[dict[str, Any]]:
    """The rows of ``table`` as JSON-ready dictionaries (numpy values as Python values)."""
    names = list(table)
    columns = [np.asarray(table[n]).tolist() if isinstance(table[n], np.ndarray) else list(table[n]) for n in names]
    return [dict(zip(names, row)) for row in zip(*columns)]


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
