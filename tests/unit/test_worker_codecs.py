"""What the workers run on: uvloop for their event loops, orjson for the JSON of their table
entries (through Faust's JSON codec), and entries written before either still decode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import orjson
import pytest
import uvloop
from faust.serializers import codecs
from faust.utils import json as faust_json

from streams.run import use_uvloop


@pytest.fixture
def restore_loop_policy() -> Iterator[None]:
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


def test_the_worker_runs_its_event_loops_on_uvloop(restore_loop_policy: None) -> None:
    assert use_uvloop()
    assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
    loop = asyncio.new_event_loop()  # what Faust's consumer thread asks for
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


ENTRY = {"vin": "1VTESTA0000000001", "state": "REGISTERED", "sequence": 3,
         "pending": None, "devices": {"d1": {"ecu": "TCU", "primary": True}},
         "memo": {"m-1": {"outputs": [{"kind": "reply", "value": "{\"a\": \"é\"}"}],
                          "effects": []}}}


def test_table_entries_are_encoded_with_orjson() -> None:
    assert faust_json.orjson is orjson
    encoded = codecs.dumps("json", ENTRY)
    assert encoded == orjson.dumps(ENTRY, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)
    assert codecs.loads("json", encoded) == ENTRY


def test_entries_written_with_the_standard_json_module_still_decode() -> None:
    # changelog records of earlier releases: spaces after separators, non-ASCII escaped
    legacy = json.dumps(ENTRY).encode()
    assert codecs.loads("json", legacy) == ENTRY


def test_a_remembered_answer_comes_back_byte_for_byte() -> None:
    # the memo keeps a device answer as text; re-sending it must not change a byte
    answer = ENTRY["memo"]["m-1"]["outputs"][0]["value"]
    decoded = codecs.loads("json", codecs.dumps("json", ENTRY))
    assert decoded["memo"]["m-1"]["outputs"][0]["value"].encode() == answer.encode()
