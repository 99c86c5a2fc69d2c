"""The copy every decision makes of the entry it changes (vprov.core.plain)."""

from __future__ import annotations

import enum

from vprov.core.plain import copied, scalar_fields


class Colour(enum.StrEnum):
    RED = "red"


def entry() -> dict:
    return {"vin": "1HGCM82633A004352", "state": "REGIONAL", "attempts": 2, "ratio": 0.5,
            "primary": True, "endpoint": None, "raw": b"\x00\xff",
            "devices": {"TCU-1": {"chipsets": [{"id": "c1"}, {"id": "c2"}]}},
            "memo": {"m1": {"outputs": [{"value": {"event_id": "e"}}], "effects": []}},
            "pair": (1, [2])}


def test_the_copy_is_equal_and_of_the_same_types():
    original = entry()
    copy = copied(original)
    assert copy == original
    assert type(copy["pair"]) is tuple and type(copy["raw"]) is bytes


def test_changing_the_copy_at_any_depth_leaves_the_original_as_it_was():
    original = entry()
    copy = copied(original)
    copy["devices"]["TCU-1"]["chipsets"][0]["id"] = "changed"
    copy["memo"]["m1"]["outputs"].append({})
    copy["pair"][1].append(3)
    copy["state"] = "PROVISIONED"
    assert original == entry()


def test_a_value_marshal_does_not_write_is_copied_all_the_same():
    original = {"state": Colour.RED, "nested": [{"colour": Colour.RED}]}
    copy = copied(original)
    assert copy == original and copy["state"] is Colour.RED
    copy["nested"][0]["colour"] = "blue"
    assert original["nested"][0]["colour"] is Colour.RED


def test_scalar_fields_are_what_asdict_gives_for_a_flat_dataclass():
    import dataclasses

    from vprov.core.envelope import Chipset

    chipset = Chipset("c1", "modem", "LTE", None, "1.0", "2.0", "hw", "sku")
    fields = scalar_fields(chipset)
    assert fields == dataclasses.asdict(chipset)
    fields["id"] = "changed"
    assert chipset.id == "c1"
