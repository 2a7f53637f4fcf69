"""The pattern registry and the spec-string parser.

Spec strings (the user's language):
  "dense"                      keep everything
  "2:4"  "1:8"                 N:M along the axis
  "2:4+1:8"                    a TASD series of N:M terms
  "name" / "name(k=v,k=v)"     a registered pattern with parameters; values are
                               ints, floats, "AxB" tuples (block=32x32) or words.
"""

import dataclasses
import functools
import re
from typing import Any, Callable, TypeVar

from tasd_jax.patterns.base import Pattern

_REGISTRY: dict[str, type[Pattern]] = {}
P = TypeVar("P", bound=type)


def register(name: str) -> Callable[[P], P]:
    """Class decorator: makes the pattern class parseable as `name(...)`."""

    def wrap(cls: P) -> P:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"pattern name {name!r} must be lower-case letters, digits, '_'")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"pattern name {name!r} is already registered to {_REGISTRY[name]}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def registered() -> dict[str, type[Pattern]]:
    """Name -> pattern class of every registered pattern."""
    return dict(_REGISTRY)


def parse(spec: "str | Pattern") -> Pattern:
    """Turns a spec string (or a pattern, returned as is) into a pattern value.

    Raises:
      ValueError: naming the spec and the rule it broke.
    """
    if isinstance(spec, Pattern):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"pattern spec {spec!r} must be a string or a Pattern")
    text = spec.strip().lower()
    try:
        if ":" in text:
            return _parse_series(text)
        call = re.fullmatch(r"([a-z_][a-z0-9_]*)\s*(?:\((.*)\))?", text)
        if not call:
            raise ValueError("expected 'N:M[+N:M...]' or 'name' or 'name(k=v,...)'")
        name, arg_text = call.group(1), call.group(2)
        if name not in _REGISTRY:
            raise ValueError(f"unknown pattern {name!r}; known: {sorted(_REGISTRY)}")
        cls = _REGISTRY[name]
        kwargs = _parse_kwargs(arg_text or "")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for {name}; known: {sorted(known)}")
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.init and f.name not in kwargs
                         and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            hint = " (a series is spelled 'N:M+N:M', e.g. '2:4+1:8')" if name == "series" else ""
            raise ValueError(f"pattern {name!r} needs parameter(s) {missing}{hint}")
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        if str(err).startswith("pattern spec"):
            raise
        raise ValueError(f"pattern spec {spec!r}: {err}") from None


@functools.lru_cache(maxsize=4096)  # specs are parsed in searches' inner loops; values are immutable
def _parse_series(text: str) -> Pattern:
    parts = text.split("+")
    if any(not p.strip() for p in parts):
        raise ValueError("a series has an empty term: terms are 'N:M' joined by '+'")
    # Checked before building the terms, so a huge spec costs nothing (the
    # limit itself, and why, are in `nm.Series`).
    _REGISTRY["series"].check_term_count(len(parts))
    terms = []
    for part in parts:
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", part)
        if not match:
            raise ValueError(f"term {part.strip()!r} is not 'N:M' with integer N and M")
        terms.append(_REGISTRY["nm"](int(match.group(1)), int(match.group(2))))
    return terms[0] if len(terms) == 1 else _REGISTRY["series"](tuple(terms))


def _parse_kwargs(arg_text: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in filter(None, (a.strip() for a in arg_text.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ValueError(f"parameter {item!r} is not 'key=value'")
        if key in kwargs:
            raise ValueError(f"parameter {key!r} is given twice")
        kwargs[key] = _parse_value(value)
    return kwargs


def _parse_value(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    if re.fullmatch(r"\d+(x\d+)+", value):
        return tuple(int(v) for v in value.split("x"))
    if re.fullmatch(r"[a-z_][a-z0-9_]*", value):
        return value
    raise ValueError(f"parameter value {value!r} is not a number, an AxB shape or a word")
