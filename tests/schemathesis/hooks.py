"""Schemathesis hooks for depot (loaded through SCHEMATHESIS_HOOKS by
run.sh): a tus PATCH body is raw bytes under the media type
application/offset+octet-stream, which schemathesis does not know."""

import schemathesis
from schemathesis.transport.requests import binary_serializer


@schemathesis.serializer("application/offset+octet-stream")
def offset_octet_stream(ctx, value):
    return binary_serializer(ctx, value)
