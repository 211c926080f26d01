"""Least-privilege check for infra/template.yaml: fails on any wildcard IAM action, any resource
that is not scoped to this stack's own buckets, table, file system, functions or state machine,
and any managed policy or SAM policy template (whose contents this check cannot see).

Usage: python infra/check_iam.py TEMPLATE   (exit 1 and one line per problem when it fails)
"""
import sys

from cfnlint.decode import decode

# Statement resources may be a Ref/GetAtt of one of the template's own resources, a Sub string
# naming one of them (objects in our buckets, executions of our state machine), or a Sub spelling
# out exactly the computed BucketName of one of the template's buckets.
OWN_PLACEHOLDERS = ("${InputBucket}", "${OutputBucket}", "${AWS::StackName}")


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


def main(path):
    template, matches = decode(path)
    if template is None:
        print(f"{path}: cannot parse: {matches}")
        return 1
    found = list(problems(template))
    for problem in found:
        print(f"{path}: {problem}")
    if not found:
        print(f"{path}: IAM statements are least-privilege (no wildcard actions, every resource scoped to this stack)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
