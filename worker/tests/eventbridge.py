"""EventBridge for worker/tests/e2e_stuck_jobs.rs on the local stack. moto runs EventBridge
(rules, pattern matching, input transformers, SQS targets) but its Step Functions emits no events,
so this plays the part of AWS that sends them; everything else is the template's and moto's.

  eventbridge.py rules ENDPOINT TEMPLATE STATE_MACHINE_ARN QUEUE_ARN PREFIX
      creates each EventBridgeRule event source of the template's JobFailedFunction as rule
      PREFIX-<event name>: its pattern (the state machine's Ref set to STATE_MACHINE_ARN) and its
      input transformer as written, targeting the SQS queue QUEUE_ARN instead of the function
  eventbridge.py emit ENDPOINT EXECUTION_ARN [STATUS]
      puts the "Step Functions Execution Status Change" event Step Functions sends when that
      execution ends (the fields of the event AWS documents), with its current status or STATUS:
      moto records a StopExecution but leaves an execution RUNNING while a callback task
      (waitForTaskToken) waits, where AWS ends it ABORTED at once
Run with target/tools/venv/bin/python (boto3 from moto, cfn-lint's template decoder).
"""
import json
import sys

import boto3
from cfnlint.decode import decode


def client(endpoint, service):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def resolve(value, state_machine_arn):
    """The value with `!Ref TranscodeStateMachine` (the state machine's ARN) filled in."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            if value["Ref"] != "TranscodeStateMachine":
                raise ValueError(f"the rule references {value['Ref']}, which this check cannot resolve")
            return state_machine_arn
        return {key: resolve(inner, state_machine_arn) for key, inner in value.items()}
    if isinstance(value, list):
        return [resolve(inner, state_machine_arn) for inner in value]
    return value


def rules(endpoint, template_path, state_machine_arn, queue_arn, prefix):
    template, problems = decode(template_path)
    if template is None:
        sys.exit(f"{template_path}: cannot parse: {problems}")
    events = template["Resources"]["JobFailedFunction"]["Properties"].get("Events", {})
    found = {name: source["Properties"] for name, source in events.items() if source["Type"] == "EventBridgeRule"}
    if not found:
        sys.exit(f"{template_path}: job-failed has no EventBridgeRule event source")
    eventbridge = client(endpoint, "events")
    for name, properties in found.items():
        rule = f"{prefix}-{name}"
        eventbridge.put_rule(Name=rule, EventPattern=json.dumps(resolve(properties["Pattern"], state_machine_arn)))
        target = {"Id": "job-failed", "Arn": queue_arn}
        if "InputTransformer" in properties:
            target["InputTransformer"] = json.loads(json.dumps(properties["InputTransformer"]))
        eventbridge.put_targets(Rule=rule, Targets=[target])
        print(rule)


def emit(endpoint, execution_arn, status=None):
    execution = client(endpoint, "stepfunctions").describe_execution(executionArn=execution_arn)
    millis = lambda date: int(date.timestamp() * 1000) if date else None
    detail = {
        "executionArn": execution["executionArn"],
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"],
        "status": status or execution["status"],
        "startDate": millis(execution.get("startDate")),
        "stopDate": millis(execution.get("stopDate")),
        "input": execution.get("input"),
        "output": execution.get("output"),
    }
    answer = client(endpoint, "events").put_events(Entries=[{
        "Source": "aws.states",
        "DetailType": "Step Functions Execution Status Change",
        "Resources": [execution_arn],
        "Detail": json.dumps(detail),
    }])
    if answer.get("FailedEntryCount"):
        sys.exit(f"put_events refused the event: {answer}")
    print(detail["status"])


if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    {"rules": rules, "emit": emit}[command](*arguments)
