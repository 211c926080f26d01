"""Least-privilege check for infra/template.yaml: fails on any wildcard IAM action, any resource
that is not scoped to this stack's own buckets, table, file system, functions or state machine,
and any managed policy or SAM policy template (whose contents this check cannot see). Then the
other way round: every S3 call a function's handler makes (NEEDED below, from functions/src/
handlers/) is granted on the right bucket, so a policy that is too narrow fails here and not on
the first deployed job.

Usage: python infra/check_iam.py TEMPLATE   (exit 1 and one line per problem when it fails)
"""
import sys

from cfnlint.decode import decode

# Statement resources may be a Ref/GetAtt of one of the template's own resources, a Sub string
# naming one of them (objects in our buckets, executions of our state machine), or a Sub spelling
# out exactly the computed BucketName of one of the template's buckets.
OWN_PLACEHOLDERS = ("${InputBucket}", "${OutputBucket}", "${SegmentBucket}", "${AWS::StackName}")


def sub_parts(sub):
    """An Fn::Sub value as (text, variables)."""
    return (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])


def bucket_names(resources):
    """The computed names (Fn::Sub values) of the template's buckets that set BucketName."""
    for resource in resources.values():
        if resource.get("Type") == "AWS::S3::Bucket":
            name = (resource.get("Properties") or {}).get("BucketName")
            if isinstance(name, dict) and "Fn::Sub" in name:
                yield sub_parts(name["Fn::Sub"])


def names_own_bucket(text, variables, own_buckets):
    """True when the ARN text names objects (or the bucket itself) of a bucket whose BucketName
    is exactly this Sub's name part with the same variables: the spelled-out name a policy uses
    where `${Bucket}` would make a dependency cycle."""
    prefix = "arn:${AWS::Partition}:s3:::"
    if not text.startswith(prefix):
        return False
    name = text[len(prefix):].split("/", 1)[0]
    return (name, variables) in own_buckets


def resource_problem(resource, logical_ids, own_buckets=()):
    if isinstance(resource, dict):
        if "Ref" in resource:
            return None if resource["Ref"] in logical_ids else f"Ref to {resource['Ref']}, not a resource of this stack"
        if "Fn::GetAtt" in resource:
            target = resource["Fn::GetAtt"]
            name = target[0] if isinstance(target, list) else str(target).split(".")[0]
            return None if name in logical_ids else f"GetAtt of {name}, not a resource of this stack"
        if "Fn::Sub" in resource:
            text, variables = sub_parts(resource["Fn::Sub"])
            if names_own_bucket(text, variables, own_buckets):
                return None
            if not any(own in text for own in OWN_PLACEHOLDERS):
                return f"{text} does not name a resource of this stack"
            prefix = text.split("${", 1)[0]
            return "wildcard before the resource name" if "*" in prefix else None
        return f"unsupported resource expression {resource}"
    if isinstance(resource, str):
        return f"literal resource {resource!r} is not scoped to this stack"
    return f"unexpected resource {resource!r}"


def conditional_branches(statements):
    """The statements with each `Fn::If` replaced by both of its branches (an `AWS::NoValue`
    branch adds nothing), so a statement granted only under a condition is checked too."""
    for statement in statements:
        if isinstance(statement, dict) and "Fn::If" in statement:
            _, when_true, when_false = statement["Fn::If"]
            yield from conditional_branches(
                [branch for branch in (when_true, when_false) if branch != {"Ref": "AWS::NoValue"}])
        else:
            yield statement


def problems(template):
    resources = template.get("Resources", {})
    logical_ids = set(resources)
    own_buckets = list(bucket_names(resources))
    for name, resource in resources.items():
        properties = resource.get("Properties", {}) or {}
        policies = []
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            policies = properties.get("Policies", []) or []
            if isinstance(policies, (str, dict)):
                policies = [policies]
        elif resource.get("Type") == "AWS::IAM::Role":
            for managed in properties.get("ManagedPolicyArns", []) or []:
                yield f"{name}: managed policy {managed} cannot be checked"
            policies = [p.get("PolicyDocument", {}) for p in properties.get("Policies", []) or []]
        elif resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            policies = [properties.get("PolicyDocument", {})]
        for policy in policies:
            if isinstance(policy, str) or (isinstance(policy, dict) and "Statement" not in policy):
                yield f"{name}: policy {policy} is a managed policy or SAM template; write its statements out"
                continue
            statements = policy["Statement"]
            for index, statement in enumerate(conditional_branches(statements if isinstance(statements, list) else [statements])):
                where = f"{name}: statement {statement.get('Sid', index)}"
                if statement.get("Effect") != "Allow":
                    continue
                if "NotAction" in statement or "NotResource" in statement:
                    yield f"{where}: NotAction/NotResource grant more than they name"
                actions = statement.get("Action", [])
                for action in actions if isinstance(actions, list) else [actions]:
                    if not isinstance(action, str) or "*" in action:
                        yield f"{where}: wildcard action {action!r}"
                targets = statement.get("Resource", [])
                for target in targets if isinstance(targets, list) else [targets]:
                    problem = resource_problem(target, logical_ids, own_buckets)
                    if problem:
                        yield f"{where}: {problem}"


# What each function's handler does in S3: (action, bucket). "input" is the upload bucket
# (spelled out by its computed name, see InputBucket), the others by logical id.
NEEDED = {
    # The upload's index by ranged reads.
    "AnalyzeFunction": [("s3:GetObject", "input"), ("s3:GetObjectVersion", "input")],
    # Its audio ranges.
    "SplitAudioFunction": [("s3:GetObject", "input"), ("s3:GetObjectVersion", "input")],
    # Its segment's byte ranges; its segment file kept (removed again if the job ended).
    "SplitAndConvertFunction": [("s3:GetObject", "input"), ("s3:GetObjectVersion", "input"),
                                ("s3:PutObject", "SegmentBucket"), ("s3:DeleteObject", "SegmentBucket")],
    # The source for the layout (extras) or the one pass; the segments it reads, then removes;
    # the output's upload.
    "MergeAudioFunction": [("s3:GetObject", "input"), ("s3:GetObjectVersion", "input"),
                           ("s3:GetObject", "SegmentBucket"), ("s3:DeleteObject", "SegmentBucket"),
                           ("s3:PutObject", "OutputBucket"), ("s3:AbortMultipartUpload", "OutputBucket")],
    "UploadPartsFunction": [("s3:GetObject", "SegmentBucket"), ("s3:PutObject", "OutputBucket")],
    # A failed job's output upload aborted, its kept segments removed.
    "JobFailedFunction": [("s3:AbortMultipartUpload", "OutputBucket"), ("s3:DeleteObject", "SegmentBucket")],
}


def names_bucket(target, bucket):
    """True when a statement's resource names objects of `bucket` ("input" or a logical id)."""
    if not isinstance(target, dict) or "Fn::Sub" not in target:
        return False
    text, _ = sub_parts(target["Fn::Sub"])
    if bucket == "input":
        return text.startswith("arn:${AWS::Partition}:s3:::treemux-input-")
    return text.startswith(f"arn:${{AWS::Partition}}:s3:::${{{bucket}}}/")


def missing_grants(template):
    resources = template.get("Resources", {})
    present = [function for function in NEEDED if function in resources]
    if present:  # the stack, not a fixture of a few statements: every function is there
        for function in NEEDED:
            if function not in resources:
                yield f"{function}: no such function (renamed? update NEEDED in infra/check_iam.py)"
    for function, needed in NEEDED.items():
        if function not in resources:
            continue
        properties = resources[function].get("Properties", {}) or {}
        statements = [
            statement
            for policy in properties.get("Policies", []) or []
            if isinstance(policy, dict)
            for statement in conditional_branches(policy.get("Statement", []))
            if isinstance(statement, dict) and statement.get("Effect") == "Allow"
        ]
        for action, bucket in needed:
            granted = False
            for statement in statements:
                actions = statement.get("Action", [])
                actions = actions if isinstance(actions, list) else [actions]
                targets = statement.get("Resource", [])
                targets = targets if isinstance(targets, list) else [targets]
                if action in actions and any(names_bucket(t, bucket) for t in targets):
                    granted = True
            if not granted:
                yield f"{function}: its handler needs {action} on the {bucket} bucket, which no statement grants"


def main(path):
    template, matches = decode(path)
    if template is None:
        print(f"{path}: cannot parse: {matches}")
        return 1
    found = list(problems(template)) + list(missing_grants(template))
    for problem in found:
        print(f"{path}: {problem}")
    if not found:
        print(f"{path}: IAM statements are least-privilege (no wildcard actions, every resource scoped to this stack) and grant every S3 call the handlers make")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
