"""BatchWriteItem without botocore's per-attribute serialisation.

The staging items are built directly in DynamoDB's JSON wire format (``{"S": ...}``,
``{"N": ...}``), so the request body is just those parameters as JSON. botocore would otherwise
walk the request model for every attribute of every item, which is the single largest CPU cost
of staging a file (about half of it, measured with ``bench/``). Every other operation is
sent through a client of its own (``Resources.item_writes``): this one refuses them, so the
shortcut can never reach a call it was not made for. It replaces a private attribute of the
client (``_serializer``), so ``tests/test_wire.py`` checks that its bodies stay byte-for-byte
what botocore's own serialiser makes, and ``send_wire_format`` refuses a client whose
serialiser is not the one it expects.
"""

from __future__ import annotations

from typing import Any

import orjson
from botocore.serialize import JSONSerializer

OPERATION = "BatchWriteItem"


class WireFormatSerializer(JSONSerializer):
    def serialize_to_request(self, parameters: Any, operation_model: Any) -> Any:
        if operation_model.name != OPERATION:
            raise TypeError(
                f"this DynamoDB client sends BatchWriteItem only, not {operation_model.name}"
            )
        metadata = operation_model.metadata
        return {
            "url_path": "/",
            "query_string": "",
            "method": operation_model.http.get("method", self.DEFAULT_METHOD),
            "headers": {
                "X-Amz-Target": f"{metadata['targetPrefix']}.{operation_model.name}",
                "Content-Type": f"application/x-amz-json-{metadata['jsonVersion']}",
            },
            # orjson: the same JSON as botocore's json.dumps (UTF-8 where it escapes non-ASCII),
            # in a fraction of the time; encoding the bodies was a tenth of staging's CPU.
            "body": orjson.dumps(parameters),
        }


def send_wire_format(client: Any) -> None:
    """Make a DynamoDB client (created with ``parameter_validation=False``) a BatchWriteItem
    client that sends its parameters as they are."""
    current = client._serializer
    if isinstance(current, WireFormatSerializer):
        return
    if type(current) is not JSONSerializer:  # validation on, or botocore changed its design
        raise TypeError(f"unexpected DynamoDB serializer {type(current).__name__}")
    client._serializer = WireFormatSerializer()
