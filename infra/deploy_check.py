"""What CloudFormation will see: transforms a SAM template the way `sam package` + `sam deploy`
hand it over (local artifact paths replaced by S3 URIs, then the AWS::Serverless-2016-10-31
transform by samtranslator, the library CloudFormation's own transform runs), writes the result,
and fails on any dependency cycle between its resources.

cfn-lint and `sam validate` on the raw template cannot see a cycle that only exists after the
transform (an S3 event source adds a bucket notification -> permission -> function -> role ->
policy edge chain), so scripts/lint-template lints the file written here as well.

Usage: python infra/deploy_check.py TEMPLATE OUT.json
Exit 1 with one line per problem (each cycle spelled out) when it fails.
"""
import hashlib
import json
import os
import re
import sys

import networkx
from cfnlint.decode import decode
from samtranslator.translator.transform import transform

# The properties `sam package` uploads and rewrites to an S3 URI, per resource type.
ARTIFACT_PROPERTIES = {
    "AWS::Serverless::Function": ["CodeUri"],
    "AWS::Serverless::LayerVersion": ["ContentUri"],
    "AWS::Serverless::StateMachine": ["DefinitionUri"],
    "AWS::Serverless::Api": ["DefinitionUri"],
    "AWS::Serverless::HttpApi": ["DefinitionUri"],
}
PSEUDO_PARAMETERS = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "treemux",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/treemux/0c8f4d60-8f4e-11ee-b9d1-0242ac120002",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}


class NoManagedPolicies:
    """The template names no managed policies (infra/check_iam.py refuses them); SAM's own
    execution-role policies are attached by ARN without a lookup."""

    def load(self):
        return {}


def packaged(template):
    """The template as `sam package` writes it: each local artifact path becomes
    s3://<bucket>/<content hash> (here a hash of the path: the content does not matter)."""
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        for name in ARTIFACT_PROPERTIES.get(resource.get("Type"), []):
            value = properties.get(name)
            if isinstance(value, str) and not value.startswith("s3://"):
                digest = hashlib.md5(value.encode()).hexdigest()
                properties[name] = f"s3://treemux-artifacts/{digest}"
    return template


def references(value, resources):
    """Logical ids of resources that `value` depends on through Ref, Fn::GetAtt or Fn::Sub."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str) and inner in resources:
                yield inner
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                if target in resources:
                    yield target
            elif key == "Fn::Sub":
                text, variables = (inner, {}) if isinstance(inner, str) else (inner[0], inner[1])
                for name in re.findall(r"\$\{([^!][^}]*)\}", text):
                    name = name.split(".")[0]
                    if name in resources and name not in variables:
                        yield name
                yield from references(variables, resources)
            else:
                yield from references(inner, resources)
    elif isinstance(value, list):
        for inner in value:
            yield from references(inner, resources)


def dependency_graph(template):
    """Resource -> resource edges: Ref, GetAtt, Sub and DependsOn, as CloudFormation orders them."""
    resources = template.get("Resources", {})
    graph = networkx.DiGraph()
    graph.add_nodes_from(resources)
    for name, resource in resources.items():
        depends_on = resource.get("DependsOn", [])
        for target in [depends_on] if isinstance(depends_on, str) else depends_on:
            graph.add_edge(name, target)
        for target in references(resource.get("Properties", {}), resources):
            graph.add_edge(name, target)
    return graph


def cycles(template):
    """Every elementary dependency cycle, each as a list of logical ids."""
    return list(networkx.simple_cycles(dependency_graph(template)))


def resources_of_type(template, kind):
    return {name: r for name, r in template["Resources"].items() if r.get("Type") == kind}


def lifecycle_problems(template):
    """Issue 12's loose ends, checked on what CloudFormation gets: every bucket aborts abandoned
    multipart uploads; analyze (the S3-triggered function) hands what fails on every attempt of
    its asynchronous invocation (1 try + 2 retries, what treemux-worker emulates) to job-failed,
    and its role may invoke exactly that function for it."""
    problems = []
    for name, bucket in resources_of_type(template, "AWS::S3::Bucket").items():
        rules = (bucket.get("Properties", {}).get("LifecycleConfiguration") or {}).get("Rules", [])
        if not any(r.get("Status") == "Enabled" and "AbortIncompleteMultipartUpload" in r for r in rules):
            problems.append(f"bucket {name} keeps abandoned multipart uploads (no AbortIncompleteMultipartUpload rule)")
    configs = {
        (c["Properties"]["FunctionName"] or {}).get("Ref"): c["Properties"]
        for c in resources_of_type(template, "AWS::Lambda::EventInvokeConfig").values()
    }
    analyze = configs.get("AnalyzeFunction")
    destination = ((analyze or {}).get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
    if destination != {"Fn::GetAtt": ["JobFailedFunction", "Arn"]}:
        problems.append(f"analyze's OnFailure destination is {destination!r}, not job-failed: a job analyze gives up on stays CREATED")
    elif analyze.get("MaximumRetryAttempts") != 2:
        problems.append(f"analyze retries {analyze.get('MaximumRetryAttempts')!r} times; treemux-worker emulates 2")
    role = template["Resources"].get("AnalyzeFunctionRole", {}).get("Properties", {})
    invokes = [
        statement
        for policy in role.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        # A statement under a condition (Fn::If) grants no invocation.
        if "Action" in statement
        and "lambda:InvokeFunction" in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    ]
    if destination == {"Fn::GetAtt": ["JobFailedFunction", "Arn"]}:
        if not invokes:
            problems.append("analyze's role may not invoke job-failed, its failure destination")
        elif any(s.get("Resource") != destination for s in invokes):
            problems.append(f"analyze's role invokes more than job-failed: {invokes}")
    return problems


def main(path, out):
    template, matches = decode(path)
    if template is None:
        print(f"{path}: cannot parse: {matches}")
        return 1
    parameters = {
        name: spec["Default"]
        for name, spec in (template.get("Parameters") or {}).items()
        if "Default" in spec
    }
    parameters.update(PSEUDO_PARAMETERS)
    # samtranslator asks boto3 for the region (partition-specific ARNs); offline there is none.
    os.environ["AWS_DEFAULT_REGION"] = PSEUDO_PARAMETERS["AWS::Region"]
    try:
        transformed = transform(packaged(json.loads(json.dumps(template))), parameters, NoManagedPolicies())
    except Exception as error:  # samtranslator raises its own InvalidDocumentException family
        print(f"{path}: the SAM transform refuses it: {error}")
        return 1
    with open(out, "w") as f:
        json.dump(transformed, f, indent=1, sort_keys=True)
    found = cycles(transformed)
    for cycle in found:
        print(f"{path}: dependency cycle after the transform: {' -> '.join(cycle + cycle[:1])}")
    if found:
        return 1
    problems = lifecycle_problems(transformed)
    for problem in problems:
        print(f"{path}: {problem}")
    # The check must bite: without the abort rules and analyze's destination it reports both.
    stripped = json.loads(json.dumps(transformed))
    for bucket in resources_of_type(stripped, "AWS::S3::Bucket").values():
        bucket.get("Properties", {}).pop("LifecycleConfiguration", None)
    for config in resources_of_type(stripped, "AWS::Lambda::EventInvokeConfig").values():
        config["Properties"].pop("DestinationConfig", None)
    bites = lifecycle_problems(stripped)
    if not (any("multipart" in p for p in bites) and any("OnFailure" in p for p in bites)):
        print(f"{path}: the lifecycle check does not bite on a template without them: {bites}")
        return 1
    if not problems:
        print(f"{path}: transformed ({len(transformed['Resources'])} resources, written to {out}); no dependency cycle; buckets abort stale uploads, analyze fails over to job-failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
