"""Catalog snapshots to and from plain JSON data (pure).

Every check family's ``gather`` (in :mod:`planguard.catalog`) returns a frozen
dataclass built only from ``str``, ``int``, ``float``, ``bool``, ``None``, tuples and
other such dataclasses, so ``dataclasses.asdict`` turns it into JSON and :func:`from_dict`
builds it back.  That is what lets ``evaluate`` be tested on snapshots recorded
from real clusters (``tests/fixtures/snapshots``) without a server.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from planguard.errors import SnapshotError

T = TypeVar("T")


def from_dict(cls: type[T], data: Any, *, path: str = "") -> T:
    """Rebuild dataclass ``cls`` from ``asdict`` output; SnapshotError names the bad field."""
    return typing.cast(T, _convert(cls, data, path or cls.__name__))


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise SnapshotError(f"snapshot field {path} must not be null")
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise SnapshotError(f"snapshot field {path}: unsupported union type {tp}")
        return _convert(inner[0], value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SnapshotError(f"snapshot field {path} must be a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise SnapshotError(f"snapshot field {path} must have {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise SnapshotError(f"snapshot field {path} must be an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        known = {f.name: f for f in dataclasses.fields(tp)}
        unknown = set(value) - set(known)
        if unknown:
            raise SnapshotError(f"snapshot field {path} has unknown keys: {', '.join(sorted(unknown))}")
        kwargs = {}
        for name, f in known.items():
            if name not in value:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise SnapshotError(f"snapshot field {path}.{name} is missing")
                continue
            kwargs[name] = _convert(hints[name], value[name], f"{path}.{name}")
        return tp(**kwargs)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SnapshotError(f"snapshot field {path} must be a number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise SnapshotError(f"snapshot field {path} must be {tp.__name__}, got {value!r}")
        return value
    raise SnapshotError(f"snapshot field {path}: unsupported type {tp}")
