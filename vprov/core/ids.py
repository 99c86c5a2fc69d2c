"""Deterministic identifiers.

Every id the processor emits (response message ids, lifecycle event ids, request ids) is derived
from what caused it, so processing the same input twice yields the same ids and consumers can
de-duplicate. No random ids anywhere in the flow.
"""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("6f1c3c9e-4b1e-5d5a-9d0e-2f7a1b8c4e21")


def derive_id(*parts: object) -> str:
    """A UUID (version 5) naming the tuple ``parts``; equal parts give equal ids."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts)))


