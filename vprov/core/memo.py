"""The memo that makes re-processing repeat, not redo.

Each vehicle entry keeps a small memo: for the last few causes it processed (a request's
message_id, a rehome request id, a deadline) the records and effects it produced. When Kafka
delivers a cause again, after a crash or a duplicate send, the worker sends the remembered records
again (``resend``) instead of deciding anew. The memo lives in the entry (``tables.models``) as
plain JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vprov.core.outputs import Decision, Effect, Output

MEMO_LIMIT = 16


def recall(entry: Mapping[str, Any] | None, cause: str
           ) -> tuple[list[Output], list[Effect]] | None:
    """The records and effects remembered for ``cause``, or None when it is new."""
    if not entry:
        return None
    remembered = entry.get("memo", {}).get(cause)
    if remembered is None:
        return None
    return (
        [Output.from_dict(o) for o in remembered["outputs"]],
        [Effect.from_dict(e) for e in remembered["effects"]],
    )


def remember(entry: Any, cause: str, outputs: list[Output], effects: list[Effect]) -> None:
    """Store what ``cause`` produced in ``entry`` (a vehicle entry, global or regional), dropping
    the oldest memo past ``MEMO_LIMIT``."""
    memo: dict[str, Any] = entry.setdefault("memo", {})
    memo.pop(cause, None)
    memo[cause] = {
        "outputs": [o.to_dict() for o in outputs],
        "effects": [e.to_dict() for e in effects],
    }
    while len(memo) > MEMO_LIMIT:
        memo.pop(next(iter(memo)))


def resend(entry: Mapping[str, Any] | None, cause: str) -> Decision | None:
    """The decision for a cause seen before: the remembered records and effects, and the entry
    written again. Writing it again matters after a crash: the entry may have reached the local
    store but not the changelog, and the input's offset is about to be committed on the strength
    of this decision, so the changelog must have the entry too."""
    remembered = recall(entry, cause)
    if remembered is None:
        return None
    outputs, effects = remembered
    return Decision(state=entry, outputs=outputs, effects=effects)
