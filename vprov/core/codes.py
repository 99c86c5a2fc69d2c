"""The one table of error codes (docs/spec.md section 4).

Every failure in the project is answered with one of these codes; nothing else defines a code.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    SYSTEM_ID_MISSING = 1001
    MESSAGE_ID_MISSING = 1002
    DEVICE_ID_MISSING = 1003
    ECU_TYPE_MISSING = 1004
    SOURCE_ID_MISSING = 1005
    TARGET_ID_MISSING = 1006
    MESSAGE_TYPE_MISSING = 1007
    TIME_MISSING = 1008
    NOT_AUTHORIZED = 1401
    VERSION_UNSUPPORTED = 1409
    PAYLOAD_TOO_LARGE = 1413
    INVALID_TRANSITION = 5000
    REGION_NOT_FOUND = 6100
    VIN_INVALID = 6108
    BODY_MISSING = 10000
    STATUS_MISSING = 10001
    MESSAGE_EXPIRED = 10003
    CHIPSETS_COUNT_MISMATCH = 11008
    QUERY_VIN_INVALID = 13101
    SYSTEM_NOT_REGISTERED = 13103
    REGIONAL_REGISTRATION_FAILED = 13105
    DEVICE_UNDER_OTHER_SYSTEM = 13108
    DEVICE_NOT_REGISTERED = 13111
    NOT_JSON = 13113
    PROPERTY_BAG_MISSING = 13114
    WRONG_MESSAGE_TYPE = 13115
    SUB_SYSTEM_ID_MISSING = 13116
    VEHICLE_INFO_MISSING = 13117
    BODY_EMPTY = 13118
    REGION_CODE_MISSING = 13119
    COUNTRY_CODE_MISSING = 13120
    CHIPSETS_COUNT_MISSING = 13121
    FIELD_VIOLATION = 13122
    DEVICE_NOT_IN_REGION = 13123
    DEVICE_ALREADY_PROVISIONED = 13124
    BODY_ENCODING_UNSUPPORTED = 13126
    BODY_ENCODING_NOT_INTEGER = 13127
    VIN_BOUND_TO_OTHER_SYSTEM = 13128
    QUERY_FIELD_MISSING = 13129
    HEADER_BODY_MISMATCH = 13130
    # After the first boot (docs/after-first-boot.md): codes of this project, not of the seed.
    VEHICLE_BUSY = 13131
    DEVICE_REPLACED = 13132
    VEHICLE_DECOMMISSIONED = 13133
    RESIDENCY_VIOLATION = 13134
    VEHICLE_NOT_FOUND = 13135
    # Not a device-facing code: an input the worker failed to process goes to the dead-letter
    # topic with this code for operators to inspect.
    INTERNAL_ERROR = 9000


MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.SYSTEM_ID_MISSING: "system_id is missing or blank",
    ErrorCode.MESSAGE_ID_MISSING: "message_id is missing or blank",
    ErrorCode.DEVICE_ID_MISSING: "device_id is missing or blank",
    ErrorCode.ECU_TYPE_MISSING: "ecu_type is missing or blank",
    ErrorCode.SOURCE_ID_MISSING: "source_id is missing or blank",
    ErrorCode.TARGET_ID_MISSING: "target_id is missing or blank",
    ErrorCode.MESSAGE_TYPE_MISSING: "message_type is missing or blank",
    ErrorCode.TIME_MISSING: "time is missing or not an integer",
    ErrorCode.NOT_AUTHORIZED: "sender is not authorized for this system or device",
    ErrorCode.VERSION_UNSUPPORTED: "version is missing or unsupported",
    ErrorCode.PAYLOAD_TOO_LARGE: "payload is larger than the configured limit",
    ErrorCode.INVALID_TRANSITION: "invalid lifecycle transition",
    ErrorCode.REGION_NOT_FOUND: "no configured region for the request",
    ErrorCode.VIN_INVALID: "VIN is not 17 valid characters",
    ErrorCode.BODY_MISSING: "body is missing or cannot be decoded",
    ErrorCode.STATUS_MISSING: "status is missing",
    ErrorCode.MESSAGE_EXPIRED: "message expired (ttl)",
    ErrorCode.CHIPSETS_COUNT_MISMATCH: "chipsets_count does not match the chipsets list",
    ErrorCode.QUERY_VIN_INVALID: "VIN missing or invalid in the query",
    ErrorCode.SYSTEM_NOT_REGISTERED: "system id is not registered",
    ErrorCode.REGIONAL_REGISTRATION_FAILED: "regional registration failed or timed out",
    ErrorCode.DEVICE_UNDER_OTHER_SYSTEM: "device is registered under another system",
    ErrorCode.DEVICE_NOT_REGISTERED: "device is not registered",
    ErrorCode.NOT_JSON: "message is not valid JSON",
    ErrorCode.PROPERTY_BAG_MISSING: "property_bag is missing or has no body_encoding_type",
    ErrorCode.WRONG_MESSAGE_TYPE: "wrong message type for this topic",
    ErrorCode.SUB_SYSTEM_ID_MISSING: "sub_system_id is missing",
    ErrorCode.VEHICLE_INFO_MISSING: "vehicle_info is missing",
    ErrorCode.BODY_EMPTY: "body is empty",
    ErrorCode.REGION_CODE_MISSING: "region_code is missing",
    ErrorCode.COUNTRY_CODE_MISSING: "country_code is missing",
    ErrorCode.CHIPSETS_COUNT_MISSING: "chipsets_count is missing",
    ErrorCode.FIELD_VIOLATION: "field violation",
    ErrorCode.DEVICE_NOT_IN_REGION: "device not found in this region",
    ErrorCode.DEVICE_ALREADY_PROVISIONED: "device is already provisioned",
    ErrorCode.BODY_ENCODING_UNSUPPORTED: "body_encoding_type must be 0 or 1",
    ErrorCode.BODY_ENCODING_NOT_INTEGER: "body_encoding_type is not an integer",
    ErrorCode.VIN_BOUND_TO_OTHER_SYSTEM: "VIN is already bound to another system",
    ErrorCode.QUERY_FIELD_MISSING: "mandatory query field missing",
    ErrorCode.HEADER_BODY_MISMATCH: "header and body disagree",
    ErrorCode.VEHICLE_BUSY: "the vehicle is moving region or being decommissioned; retry later",
    ErrorCode.DEVICE_REPLACED: "the device was replaced and its identity revoked",
    ErrorCode.VEHICLE_DECOMMISSIONED: "the vehicle is decommissioned",
    ErrorCode.RESIDENCY_VIOLATION: "the move would break the country's data residency",
    ErrorCode.VEHICLE_NOT_FOUND: "no vehicle is bound to this VIN",
    ErrorCode.INTERNAL_ERROR: "internal processing error",
}


def message_for(code: ErrorCode, detail: str | None = None) -> str:
    """Human-readable text for a code, with the offending field or value when known."""
    text = MESSAGES[code]
    return f"{text}: {detail}" if detail else text
