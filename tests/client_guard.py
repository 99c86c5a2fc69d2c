"""Kafka clients a test left to the garbage collector.

The cycle collector frees an object in a reference cycle by clearing it before its destructor
runs; for a confluent-kafka client that means librdkafka is torn down behind a half-cleared
handle, which can crash the interpreter much later, in whatever test happens to trigger the
collection (confluent-kafka-python issue 1761). Every client is to be closed where its work ends
(``vprov.kafka.clients``); this finds the ones that were not.
"""

from __future__ import annotations

import gc

from confluent_kafka import cimpl

# the C types every client derives from (AdminClient wraps the last)
CLIENT_TYPES = (cimpl.Consumer, cimpl.Producer, cimpl._AdminClientImpl)

# clients found open in garbage: kept alive for good, so that nothing tears them down mid-run
_kept: list[object] = []


def is_open(client: object) -> bool:
    """Whether ``client`` still holds a librdkafka handle (its methods raise once closed)."""
    try:
        if isinstance(client, cimpl.Consumer):
            client.assignment()
        else:
            client.poll(0)  # type: ignore[attr-defined]
    except RuntimeError:
        return False
    return True


def open_clients_in_garbage() -> list[str]:
    """Collect the cyclic garbage without freeing it, keep the open clients found in it, then
    free the rest; the kept clients' type names."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
    finally:
        gc.set_debug(0)
    found = [o for o in gc.garbage if isinstance(o, CLIENT_TYPES) and is_open(o)]
    _kept.extend(found)
    gc.garbage.clear()
    gc.collect()  # the rest, now that the open clients are referenced from here alone
    return [type(o).__name__ for o in found]
