"""BatchWriteItem without botocore's per-attribute serialisation.

The staging items are built directly in DynamoDB's JSON wire format (``{"S": ...}``,
``{"N": ...}``), so the request body is just those parameters as JSON. botocore would otherwise
walk the request model for every attribute of every item, which is the single largest CPU cost
of staging a file (about half of it, measured with ``bench/``). Every other operation is
serialised by botocore as usual.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.serialize import JSONSerializer

PASS_THROUGH_OPERATIONS = frozenset({"BatchWriteItem"})


class WireFormatSerializer(JSONSerializer):
    def serialize_to_request(self, parameters: Any, operation_model: Any) -> Any:
        if operation_model.name not in PASS_THROUGH_OPERATIONS:
            return super().serialize_to_request(parameters, operation_model)
        metadata = operation_model.metadata
        return {
            "url_path": "/",
            "query_string": "",
            "method": operation_model.http.get("method", self.DEFAULT_METHOD),
            "headers": {
                "X-Amz-Target": f"{metadata['targetPrefix']}.{operation_model.name}",
                "Content-Type": f"application/x-amz-json-{metadata['jsonVersion']}",
            },
            "body": json.dumps(parameters, separators=(",", ":")).encode(),
        }


def send_wire_format(client: Any) -> None:
    """Make a DynamoDB client (created with ``parameter_validation=False``) send
    BatchWriteItem parameters as they are."""
    current = client._serializer
    if isinstance(current, WireFormatSerializer):
        return
    if type(current) is not JSONSerializer:  # validation on, or botocore changed its design
        raise TypeError(f"unexpected DynamoDB serializer {type(current).__name__}")
    client._serializer = WireFormatSerializer()
