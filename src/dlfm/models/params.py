"""Hyper-parameters, declared once per model: type, range or choices, and a one-line meaning.

Each model lists its hyper-parameters as :class:`Param` entries in its ``hyper_parameters``
class attribute; the default is the one of the model's ``__init__`` (scikit-learn style, the
one place a default lives). From these declarations alone

* :meth:`Recommender.fit <dlfm.models.base.Recommender.fit>` (and loading a model file)
  validates every value by type and range, with a :class:`~dlfm.errors.ConfigError` that
  names the parameter;
* ``--param KEY=VALUE`` is parsed into the declared type (:func:`dlfm.models.parse_params`, a
  front end of :func:`parse_pairs`, the one reader of ``--param`` pairs);
* ``dlfm params MODEL`` lists every hyper-parameter with its default, type and meaning.

Floats must be finite (a NaN learning rate or penalty is an error, never a NaN prediction);
integers must be integers (``2.5``, ``"10"``, ``True`` and ``None`` are errors, not rounded or
cast); sizes have an upper bound so that a typo cannot ask for terabytes.
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from dlfm.errors import ConfigError

#: the largest seed: seeds (plus small offsets) must fit numpy's and torch's generators
MAX_SEED = 2**63 - 1
#: the largest width of a layer or number of factors
MAX_WIDTH = 100_000

_TYPE_NAMES = {int: "integer", float: "number", bool: "true/false", str: "text"}


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: its name, type, allowed values and meaning.

    Args:
        name: the ``__init__`` argument (``--param`` also accepts dashes for underscores).
        kind: ``int``, ``float``, ``bool`` or ``str``.
        help: what it means, in one line.
        low, high: the allowed range of a number (``None``: unbounded on that side).
        low_open, high_open: whether ``low`` (``high``) itself is excluded.
        choices: the allowed values of a ``str`` parameter.
    """

    name: str
    kind: type
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ describing
    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.kind]

    def allowed(self) -> str:
        """The allowed values in words: ``1 … 100000``, ``in [0, 1)``, ``one of a, b``."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        if self.low is not None and self.high is not None:
            if self.kind is int:
                return f"from {_number(self.low)} to {_number(self.high)}"
            return f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '≥'} {_number(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '≤'} {_number(self.high)}"
        return "any finite number" if self.kind is float else f"any {self.type_name}"

    # ------------------------------------------------------------------ checking
    def check(self, value: Any, model: str) -> None:
        """Raise :class:`ConfigError` naming this parameter unless ``value`` is allowed."""
        what = f"{model}: {self.name}"
        if self.kind is bool:
            if not isinstance(value, (bool, _numpy_bool())):
                raise ConfigError(f"{what} must be true or false, not {_show(value)}")
            return
        if self.kind is str:
            if not isinstance(value, str):
                raise ConfigError(f"{what} must be {self.allowed()}, not {_show(value)}")
            if self.choices is not None and value not in self.choices:
                raise ConfigError(f"{what} must be {self.allowed()}, not {value!r}")
            return
        if isinstance(value, (bool, _numpy_bool())) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{what} must be {'an integer' if self.kind is int else 'a number'}, not {_show(value)}")
        if self.kind is int and not isinstance(value, numbers.Integral):
            raise ConfigError(f"{what} must be an integer, not {_show(value)}")
        if self.kind is float and not _finite(value):
            raise ConfigError(f"{what} must be a finite number, not {_show(value)}")
        if not self._in_range(value):
            raise ConfigError(f"{what} must be {self.allowed()}, not {_show(value)}")

    def _in_range(self, value: Any) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True

    # ------------------------------------------------------------------ parsing
    def parse(self, text: str, model: str) -> Any:
        """The value of ``--param NAME=TEXT``, checked (:meth:`check`)."""
        hint = f" (see `dlfm params {model}`)"
        raw = text.strip()
        if self.kind is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                value: Any = True
            elif low in ("0", "false", "no", "off"):
                value = False
            else:
                raise ConfigError(f"--param {self.name}: expected true or false, not {text!r}{hint}")
        elif self.kind is int:
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"--param {self.name}: expected an integer, not {_cut(text)!r}{hint}") from None
        elif self.kind is float:
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"--param {self.name}: expected a number, not {_cut(text)!r}{hint}") from None
        else:
            value = raw
        try:
            self.check(value, model)
        except ConfigError as exc:
            raise ConfigError(f"--param {str(exc).split(': ', 1)[1]}{hint}") from None
        return value


def split_param(pair: str) -> tuple[str, str]:
    """``"n-factors=50"`` → ``("n_factors", "50")``; a clear error without ``=``."""
    if "=" not in pair:
        raise ConfigError(f"--param expects key=value, not {pair!r}")
    key, value = pair.split("=", 1)
    return key.strip().replace("-", "_"), value


def parse_pairs(pairs: Iterable[str], *, owner: str, known: Sequence[str] | None,
                value_of: Callable[[str, str], Any], key_of: Callable[[str], str] = lambda key: key,
                see: str = "") -> dict[str, Any]:
    """The one reader of ``--param KEY=VALUE`` pairs: ``["n-factors=50", "reg=0.1"]`` →
    ``{"n_factors": value_of("n_factors", "50"), "reg": value_of("reg", "0.1")}``.

    Each pair is split by :func:`split_param` (dashes in the key become underscores), its key
    passed through ``key_of`` (e.g. a deprecated name to its new one) and checked against
    ``known`` (``None``: anything goes) — an unknown key is a :class:`ConfigError` naming
    ``owner``, the closest known key and all of them, then ``see`` — and its value text read
    by ``value_of(key, text)``. The front ends differ only in ``value_of``:
    :func:`dlfm.models.parse_params` reads a value by the model's declared :class:`Param`
    (type and range checked, so ``n_factors=2.5`` is an error), while
    :func:`dlfm.evaluation.surprise_bridge.parse_params` reads a Python literal, since
    Surprise's classes declare no types (``sim_options={'name': 'pearson'}`` is a dict).
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, text = split_param(pair)
        key = key_of(key)
        if known is not None and key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            listing = f"it has {', '.join(known)}" if known else "it has no hyper-parameters"
            raise ConfigError(f"{owner} has no parameter {key!r}; {hint}{listing}{see}")
        params[key] = value_of(key, text)
    return params


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond the floats
        return False


def _number(x: float) -> str:
    if isinstance(x, int):
        return str(x)
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:g}"


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _show(value: Any) -> str:
    """``value`` for an error message: its repr (cut), and its type where that is the point."""
    shown = _cut(repr(value))
    if isinstance(value, (str, bool)) or value is None:
        return shown
    return f"{shown} ({type(value).__name__})" if not isinstance(value, numbers.Real) else shown


def _numpy_bool() -> type:
    import numpy as np

    return np.bool_


def seed_param(help: str = "seed of every random choice of the model") -> Param:
    """The ``seed`` every random model has: an integer from 0 to :data:`MAX_SEED`."""
    return Param("seed", int, help, low=0, high=MAX_SEED)


def size_param(name: str, help: str, low: int = 1, high: int = MAX_WIDTH) -> Param:
    """An integer size (a width, a count) from ``low`` to ``high``."""
    return Param(name, int, help, low=low, high=high)


def table(specs: Iterable[Param], defaults: dict[str, Any]) -> list[list[str]]:
    """Rows ``name, type, default, allowed, meaning`` for ``dlfm params``."""
    return [[p.name, p.type_name, _default_text(defaults.get(p.name)), p.allowed(), p.help] for p in specs]


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
