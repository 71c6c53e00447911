"""Fault injection at the HTTP layer: AWS error responses that botocore parses and retries as real ones.

A fault is registered on a client's ``before-send`` event for one operation, so botocore sees a genuine
error response (protocol-correct body and status) and applies its own retry logic to it, exactly as it
would to a real throttle or conflict; moto answers once the fault is used up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import MockRawResponse

THROTTLING = "ThrottlingException"
CONCURRENT_MODIFICATION = "ConcurrentModification"
INTERNAL_ERROR = "InternalError"


@dataclass
class Fault:
    operation: str  # e.g. "iam:TagUser"
    code: str
    remaining: int
    status: int = 400
    injected: int = 0


def error_response(service_model: Any, code: str, status: int, url: str) -> AWSResponse:
    protocol = service_model.protocol
    if protocol in ("query", "ec2"):
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            "<Message>injected by the sandbox</Message></Error>"
            "<RequestId>sandbox</RequestId></ErrorResponse>"
        ).encode()
        headers = {"Content-Type": "text/xml"}
    else:
        body = json.dumps({"__type": code, "message": "injected by the sandbox"}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
    return AWSResponse(url, status, headers, MockRawResponse(body))


class FaultInjector:
    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._attached: list[tuple[Any, str, str]] = []

    def add(self, operation: str, code: str, times: int, status: int | None = None) -> Fault:
        # The status AWS answers with: IAM's ConcurrentModification is 409, SNS's InternalError 500 (SNS
        # API Reference, Publish: "InternalError ... HTTP Status Code: 500"), which botocore retries.
        default = {CONCURRENT_MODIFICATION: 409, INTERNAL_ERROR: 500}.get(code, 400)
        fault = Fault(operation, code, times, status or default)
        self.faults.append(fault)
        return fault

    def attach(self, client: Any) -> None:
        model = client.meta.service_model
        prefix = model.service_id.hyphenize()

        def before_send(request: Any, event_name: str = "", **_: Any) -> AWSResponse | None:
            operation = f"{model.service_name}:{event_name.rsplit('.', 1)[-1]}"
            for fault in self.faults:
                if fault.operation == operation and fault.remaining > 0:
                    fault.remaining -= 1
                    fault.injected += 1
                    url = request.url
                    # botocore emits before-send to every handler and takes the first answer: point the
                    # request elsewhere so moto's handler (which runs after this one) does not act on it.
                    request.url = "https://fault-injected.sandbox.invalid/"
                    return error_response(model, fault.code, fault.status, url)
            return None

        event, unique_id = f"before-send.{prefix}", f"sandbox-faults-{prefix}-{id(self)}"
        client.meta.events.register(event, before_send, unique_id=unique_id)
        self._attached.append((client, event, unique_id))

    def detach(self) -> None:
        """Remove this injector from every client it was attached to (clients outlive tests)."""
        for client, event, unique_id in self._attached:
            client.meta.events.unregister(event, unique_id=unique_id)
        self._attached.clear()
