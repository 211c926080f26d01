"""moto_server with DynamoDB requests made atomic, as DynamoDB's own are.

moto checks a ConditionExpression and then applies the update without a lock, so two requests
racing on one item can both pass the check: one conditional write silently overwrites the other
(the state-store conformance suite loses updates against plain moto). treemux's claim protocol and
job record rely on conditional writes being atomic, so the local stack serializes every DynamoDB
request. Other services are untouched (SQS long polls must not wait on each other).

moto's Step Functions answers SendTaskSuccess/Failure/Heartbeat by asking every execution of every
state machine whether the token is its own, and one that has no running interpreter (just started,
or finished) raises AttributeError: a 500 for another test's answer, now and then. Such an
execution can hold no token, so the search skips it.

Usage: python moto-server.py [moto_server arguments]. TREEMUX_MOTO_SWITCH_INTERVAL (seconds) sets
Python's thread switch interval, to provoke races when checking this file itself.
"""

import os
import sys
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

if os.environ.get("TREEMUX_MOTO_SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["TREEMUX_MOTO_SWITCH_INTERVAL"]))

_dynamodb_lock = threading.Lock()
_call_action = DynamoHandler.call_action


def _atomic_call_action(self):
    with _dynamodb_lock:
        return _call_action(self)


DynamoHandler.call_action = _atomic_call_action

_get_executions = StepFunctionsParserBackend._get_executions


def _executions_with_an_interpreter(self, execution_status=None):
    return [
        execution
        for execution in _get_executions(self, execution_status)
        if getattr(getattr(execution, "exec_worker", None), "env", None) is not None
    ]


StepFunctionsParserBackend._get_executions = _executions_with_an_interpreter

if __name__ == "__main__":
    sys.exit(main())
