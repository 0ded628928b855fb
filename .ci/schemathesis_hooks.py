"""Schemathesis serializers for the ingest bodies that are not JSON.

`POST /api/v1/events`, `/api/v1/client-events` and
`/api/v1/accounting/radius` take NDJSON, and the first two CSV.
openapi.yaml describes those bodies as strings with examples (issue 26), so
a generic tool can send them as text: schemathesis does so for `text/csv`
by itself, but has no serializer for `application/x-ndjson`. These hooks
send a string as it is under either type, so that the NDJSON examples and
generated texts reach the service too. Any other value (the negative tests
generate arrays, numbers, objects for a string body) is sent as its JSON
text, which is neither CSV nor NDJSON of the row schema, and which the
service must therefore reject.

.ci/contract-test.sh runs schemathesis once without these hooks, as a
consumer who does not know us would, and once with them. Load them with
`PYTHONPATH=.ci SCHEMATHESIS_HOOKS=schemathesis_hooks`.
"""

import json

import schemathesis


def _text(value):
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    return json.dumps(value).encode()


@schemathesis.serializer("application/x-ndjson")
def to_ndjson(ctx, value):
    return _text(value)


@schemathesis.serializer("text/csv")
def to_csv(ctx, value):
    return _text(value)
