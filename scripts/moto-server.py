"""moto_server with DynamoDB requests made atomic, as DynamoDB's own are.

moto checks a ConditionExpression and then applies the update without a lock, so two requests
racing on one item can both pass the check: one conditional write silently overwrites the other
(the state-store conformance suite loses updates against plain moto). treemux's claim protocol and
job record rely on conditional writes being atomic, so the local stack serializes every DynamoDB
request. Other services are untouched (SQS long polls must not wait on each other).

Usage: python moto-server.py [moto_server arguments]. TREEMUX_MOTO_SWITCH_INTERVAL (seconds) sets
Python's thread switch interval, to provoke races when checking this file itself.
"""

import os
import sys
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

if os.environ.get("TREEMUX_MOTO_SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["TREEMUX_MOTO_SWITCH_INTERVAL"]))

_dynamodb_lock = threading.Lock()
_call_action = DynamoHandler.call_action


def _atomic_call_action(self):
    with _dynamodb_lock:
        return _call_action(self)


DynamoHandler.call_action = _atomic_call_action

if __name__ == "__main__":
    sys.exit(main())
