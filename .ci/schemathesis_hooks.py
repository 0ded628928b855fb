"""Schemathesis serializers for the ingest bodies that are not JSON.

`POST /api/v1/events` takes an array of `IngestEvent` objects as JSON, as
NDJSON (one object per line) or as CSV (a header row, then one row per
event). openapi.yaml describes all three with the same array schema;
schemathesis knows how to send JSON only, so these hooks turn a generated
array into the other two wire formats. Load them with
`PYTHONPATH=scripts SCHEMATHESIS_HOOKS=schemathesis_hooks`.

A generated value the format cannot carry (negative tests produce numbers,
nested objects, a top-level non-array...) is sent in a form the service must
reject, since the model says it is invalid: CSV has no types, so such a row
gets one field too many.
"""

import csv
import io
import json

import schemathesis

FIELDS = ["timestamp", "authMethodType", "authMethodName", "authRequestOrigin", "userId", "eventId"]


@schemathesis.serializer("application/x-ndjson")
def to_ndjson(ctx, value):
    if not isinstance(value, list):
        return json.dumps(value).encode()
    return "".join(json.dumps(item) + "\n" for item in value).encode()


def _cell(value):
    return value if isinstance(value, str) else None


@schemathesis.serializer("text/csv")
def to_csv(ctx, value):
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        return json.dumps(value).encode()
    # No events: the header alone (every column, eventId included).
    columns = [f for f in FIELDS if not value or any(f in item for item in value)]
    columns += sorted({k for item in value for k in item} - set(columns))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for item in value:
        row = []
        representable = True
        for column in columns:
            v = item.get(column)
            if column == "eventId" and v is None:
                row.append("")  # an empty cell means no ID
            elif column not in item or _cell(v) is None or (column == "eventId" and v == ""):
                # A missing required value, a non-string, or an empty ID
                # (which CSV would read as none): not representable.
                representable = False
                row.append("" if _cell(v) is None else v)
            else:
                row.append(v)
        if not representable:
            row.append("")
        writer.writerow(row)
    return out.getvalue().encode()
