"""Copies of plain values: the JSON-shaped table entries and the records decisions build.

A decision never changes the entry it was given: it copies it, then changes the copy. Entries
are dicts, lists and scalars (JSON in RocksDB), so a copy needs none of ``copy.deepcopy``'s
generality (a memo of every object, a dispatch per type in Python), which made it one of the
larger costs of a decision. ``marshal`` copies exactly these types in C, in a sixth of the time.
"""

from __future__ import annotations

import copy
import dataclasses
import marshal
from typing import Any, TypeVar, cast

T = TypeVar("T")


def copied(value: T) -> T:
    """A copy of ``value`` that shares nothing mutable with it. Dicts, lists, tuples, str,
    bytes, int, float, bool and None take the fast way; a value holding any other type (an
    enum member, a subclass of these) is deep-copied."""
    try:
        return cast(T, marshal.loads(marshal.dumps(cast(Any, value))))
    except ValueError:  # a type marshal does not write
        return copy.deepcopy(value)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def scalar_fields(instance: Any) -> dict[str, Any]:
    """A dataclass instance whose fields hold scalars, as a dict of its fields: what
    ``dataclasses.asdict`` gives for it, without the recursive walk and copy."""
    kind = type(instance)
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(instance))
    return {name: getattr(instance, name) for name in names}
