"""``dlfm params MODEL``: every hyper-parameter of a model, with its default, type and meaning,
and the deprecated names (``renamed_params``) still accepted for one release."""

from __future__ import annotations

import argparse

from dlfm.cli.common import add_json_option, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="list a model's hyper-parameters (for --param)",
                       description="Every hyper-parameter of MODEL: its name (for --param NAME=VALUE), type, "
                                   "default, allowed values and meaning.")
    p.add_argument("model", metavar="MODEL", help="model name: mean, baseline, pmf, mf, dlf, vdlf")
    add_json_option(p)
    p.set_defaults(handler=run_params)


def run_params(args: argparse.Namespace) -> int:
    from dlfm.models import model_class
    from dlfm.models.params import table

    cls = model_class(args.model)
    specs = cls.param_specs()
    defaults = cls.param_defaults()
    aliases: dict[str, list[str]] = {}
    for old, new in cls.renamed().items():
        aliases.setdefault(new, []).append(old)
    if args.json_path == "-":
        pass  # stdout is the JSON alone
    elif not specs:
        print(f"model {args.model!r} has no hyper-parameters")
    else:
        rows = table(specs.values(), defaults)
        widths = [max(len(r[k]) for r in rows) for k in range(4)]
        headers = ["name", "type", "default", "allowed"]
        lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)) + "  meaning"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
        print("\n".join(lines))
        print(f"\nset one with --param NAME=VALUE, e.g. --param {rows[0][0]}={rows[0][2]}")
        if aliases:
            print("deprecated names, still accepted in this release (with a warning): "
                  + ", ".join(f"{old} → {new}" for new, olds in aliases.items() for old in olds))
    emit_json(args.json_path, [{"name": s.name, "type": s.type_name, "default": defaults.get(s.name),
                                "allowed": s.allowed(), "meaning": s.help,
                                **({"deprecated_names": aliases[s.name]} if s.name in aliases else {})}
                               for s in specs.values()])
    return 0
