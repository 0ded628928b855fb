"""Schemathesis serializers for the ingest bodies that are not JSON.

`POST /api/v1/events` takes an array of `IngestEvent` objects as JSON, as
NDJSON (one object per line) or as CSV (a header row, then one row per
event); `POST /api/v1/client-events` the same with `IngestClientEvent`
objects. openapi.yaml describes the NDJSON and CSV bodies as strings
(issue 26), which these hooks send as they are; .ci/contract-test.sh runs
schemathesis once without them, as a consumer who does not know us would,
and once with them. A generated array (from an older form of the spec, or
another tool's case) is turned into the wire format. Load them with
`PYTHONPATH=.ci SCHEMATHESIS_HOOKS=schemathesis_hooks`.

A generated value the format cannot carry (negative tests produce numbers,
nested objects, a top-level non-array...) is sent in a form the service must
reject, since the model says it is invalid: CSV has no types, so such a row
gets one field too many.
"""

import csv
import io
import json

import schemathesis

# Per ingest path: the fields in order, and which are required.
# Fields whose JSON values are integers (CSV carries them as decimal text).
INTEGERS = {
    "channel", "categoryCode", "typeCode", "subTypeCode", "vlan", "rssi",
    "associationTimestamp", "authenticationTimestamp", "networkTimestamp",
    "failureCode", "subFailureCode", "dhcpLatency", "aaaLatency", "dnsLatency",
}
# Fields that take an integer or a string.
INTEGER_OR_STRING = {"/api/v1/client-events": {"timestamp"}}

KINDS = {
    "/api/v1/events": (
        ["timestamp", "authMethodType", "authMethodName", "authRequestOrigin", "userId", "eventId"],
        {"timestamp", "authMethodType", "authMethodName", "authRequestOrigin", "userId"},
    ),
    "/api/v1/client-events": (
        [
            "timestamp", "macAddress", "eventType", "protocol", "ssid", "bssid", "channel",
            "associatedAPName", "categoryCode", "typeCode", "subTypeCode", "category",
            "eventDescription", "subEventDescription", "vlan", "ip", "rssi",
            "associationTimestamp", "authenticationTimestamp", "networkTimestamp",
            "failureCode", "failure", "subFailureCode", "subFailure", "dhcpLatency",
            "aaaLatency", "dnsLatency", "eventId",
        ],
        {"timestamp", "macAddress", "eventType"},
    ),
}


@schemathesis.serializer("application/x-ndjson")
def to_ndjson(ctx, value):
    if isinstance(value, str):
        # The spec describes the body as text (issue 26): sent as it is.
        return value.encode()
    if not isinstance(value, list):
        return json.dumps(value).encode()
    return "".join(json.dumps(item) + "\n" for item in value).encode()


def _cell(value, integer=False):
    """The CSV text of a value: strings as they are, integers in decimal
    where the field takes integers; None for what CSV cannot carry."""
    if isinstance(value, str):
        return value
    if integer and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _path(ctx):
    case = getattr(ctx, "case", None)
    operation = getattr(case, "operation", None)
    return getattr(operation, "path", "/api/v1/events")


@schemathesis.serializer("text/csv")
def to_csv(ctx, value):
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        return json.dumps(value).encode()
    path = _path(ctx)
    fields, required = KINDS.get(path, KINDS["/api/v1/events"])
    integers = (INTEGERS | INTEGER_OR_STRING.get(path, set())) if path != "/api/v1/events" else set()
    # No events: the header alone (every column, optional ones included).
    columns = [f for f in fields if not value or any(f in item for item in value)]
    columns += sorted({k for item in value for k in item} - set(columns))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for item in value:
        row = []
        representable = True
        for column in columns:
            v = item.get(column)
            cell = _cell(v, column in integers)
            optional = column in fields and column not in required
            if optional and v is None:
                row.append("")  # an empty cell of an optional field means none
            elif column not in item or cell is None or (optional and v == ""):
                # A missing required value, a value CSV cannot carry, or an
                # empty optional value (which CSV would read as none): not
                # representable.
                representable = False
                row.append("" if cell is None else cell)
            else:
                row.append(cell)
        if not representable:
            row.append("")
        writer.writerow(row)
    return out.getvalue().encode()
