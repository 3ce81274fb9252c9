"""The encoders' table kernels alone, at the shape of the 16M-rating item encoder.

Shape (defaults): the item encoder of 16M synthetic ratings in ML-20M's proportions reads a
table of 2 × 110,793 rows (users' value and indicator channels) × 200; one step encodes
1,337 items through about 530,000 kept entries.

* ``backward``: the table gradient of :class:`dlfm.nn.encoders._RowSums` the former way (a
  bag per column read, then a zero table and the bags copied in) and the current way (one
  bag per table row, empty where nothing was read); the two gradients are checked equal
  bit for bit.
* ``forward_layout``: the forward embedding bag with the table's A and B halves apart (rows j
  and n + j, the current layout) and interleaved (rows 2j and 2j + 1, adjacent in memory): a
  proposal, not what the encoders do.

    python benchmarks/table_kernels.py --json table_kernels.json [--threads 1] [--columns 110793]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _best_ms(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best * 1e3


def measure(columns: int, hidden: int, segments: int, entries: int, repeats: int) -> dict:
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    read = torch.sort(torch.randint(0, columns, (entries,), generator=generator)).values
    t_rows, counts = torch.unique_consecutive(read, return_counts=True)
    t_offsets = torch.cumsum(counts, 0) - counts
    t_segment = torch.randint(0, segments, (entries,), generator=generator)
    per_entry = torch.cat([torch.randn(entries, generator=generator), torch.rand(entries, generator=generator)])
    grad = torch.randn(segments, hidden, generator=generator)
    bag_segments = torch.cat([t_segment, t_segment])

    def former() -> torch.Tensor:
        both = F.embedding_bag(bag_segments, grad, torch.cat([t_offsets, t_offsets + entries]), mode="sum",
                               per_sample_weights=per_entry)
        table_grad = torch.zeros(2 * columns, hidden)
        table_grad.index_copy_(0, torch.cat([t_rows, t_rows + columns]), both)
        return table_grad

    def one_bag() -> torch.Tensor:
        per_row = torch.zeros(columns, dtype=torch.int64)
        per_row[t_rows] = counts
        starts = torch.cumsum(per_row, 0) - per_row
        return F.embedding_bag(bag_segments, grad, torch.cat([starts, starts + entries]), mode="sum",
                               per_sample_weights=per_entry)

    identical = bool(torch.equal(former(), one_bag()))
    table = torch.randn(2 * columns, hidden, generator=generator)
    shuffled = torch.randint(0, columns, (entries,), generator=generator)
    segment_of = torch.sort(torch.randint(0, segments, (entries,), generator=generator)).values
    offsets = torch.searchsorted(segment_of, torch.arange(segments)) * 2
    weights = torch.stack([per_entry[:entries], per_entry[entries:]], 1).reshape(-1)
    apart = torch.stack([shuffled, shuffled + columns], 1).reshape(-1)
    interleaved = torch.stack([2 * shuffled, 2 * shuffled + 1], 1).reshape(-1)

    def forward(index: torch.Tensor):
        return lambda: F.embedding_bag(index, table, offsets, mode="sum", per_sample_weights=weights)

    return {"columns": columns, "hidden": hidden, "segments": segments, "entries": entries,
            "rows_read_share": len(t_rows) / columns, "backward_ms": {
                "former_zeros_plus_copy": _best_ms(former, repeats), "one_bag": _best_ms(one_bag, repeats)},
            "backward_bit_identical": identical,
            "forward_ms": {"halves_apart": _best_ms(forward(apart), repeats),
                           "interleaved": _best_ms(forward(interleaved), repeats)},
            "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--columns", type=int, default=110_793)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--segments", type=int, default=1_337)
    parser.add_argument("--entries", type=int, default=530_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import report

    report(measure(args.columns, args.hidden, args.segments, args.entries, args.repeats), args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
