"""Deploy-time validation of infra/template.yaml: evaluates its parameter constraints
(AllowedValues, AllowedPattern, MinValue/MaxValue) and its `Rules` the way CloudFormation does
when a stack is created or updated, for a table of parameter sets, and fails when a set that every
job would fail on is accepted or a good set is refused. Then checks that each job parameter
reaches the functions: the template's Globals pass it as the environment variable that
functions/src/aws/*.rs read (a parameter validated here but never passed on would be ignored).

Usage: python infra/rules_check.py TEMPLATE   (exit 1 and one line per wrong verdict)
"""
import copy
import os
import re
import sys

from cfnlint.decode import decode

# (parameters, refused?) - the encoder limits of EncodeSettings::validate (core/src/settings.rs).
CASES = [
    ({}, False),
    ({"Codec": "h265"}, False),
    ({"Codec": "vp9"}, False),
    ({"Codec": "av1"}, False),
    ({"Codec": "vp9", "Preset": "medium"}, True),
    ({"Codec": "av1", "Preset": "medium"}, True),
    ({"Codec": "vp9", "Preset": "4"}, False),
    ({"Codec": "vp9", "Preset": "9"}, True),
    ({"Codec": "av1", "Preset": "13"}, False),
    ({"Codec": "av1", "Preset": "14"}, True),
    ({"Codec": "h264", "Preset": "4"}, True),
    ({"Codec": "h264", "Preset": "veryslow"}, False),
    ({"Codec": "h264", "Crf": "51"}, False),
    ({"Codec": "h264", "Crf": "52"}, True),
    ({"Codec": "h265", "Crf": "63"}, True),
    ({"Codec": "vp9", "Crf": "63"}, False),
    ({"Codec": "av1", "Crf": "64"}, True),
    ({"Crf": "20", "Bitrate": "2M"}, True),
    ({"Bitrate": "2M"}, False),
    ({"Bitrate": "800k"}, False),
    ({"Bitrate": "fast"}, True),
    ({"Bitrate": "0"}, True),
    ({"Height": "720"}, False),
    ({"Height": "1"}, True),
    ({"Height": "0720"}, True),
    ({"Codec": "av1", "Height": "32"}, True),
    ({"Codec": "av1", "Height": "64"}, False),
    ({"Container": "webm", "Codec": "vp9"}, False),
    ({"Container": "webm"}, True),
    ({"Container": "mov", "Codec": "av1"}, True),
    ({"Container": "mkv", "Codec": "av1"}, False),
    ({"Container": "avi"}, True),
    ({"SegmentConcurrency": "0"}, True),
    ({"SegmentConcurrency": "200"}, False),
    ({"ExecutionTimeoutSeconds": "30"}, True),
]


# Each parameter a job reads -> the environment variable functions/src/aws/*.rs read it from.
PARAMETER_VARIABLES = {
    "Codec": "TREEMUX_CODEC",
    "Crf": "TREEMUX_CRF",
    "Bitrate": "TREEMUX_BITRATE",
    "Preset": "TREEMUX_PRESET",
    "Height": "TREEMUX_HEIGHT",
    "Container": "TREEMUX_CONTAINER",
    "JobTemplates": "TREEMUX_TEMPLATES",
    "MaxSegments": "TREEMUX_MAX_SEGMENTS",
    "OutputPrefix": "TREEMUX_OUTPUT_PREFIX",
    "JobTtlDays": "TREEMUX_TTL_DAYS",
    "ProgressEventSeconds": "TREEMUX_PROGRESS_EVENT_SECONDS",
    "TimeoutSeconds": "TREEMUX_FUNCTION_TIMEOUT_SECONDS",
}


def wiring_problems(template, reader_source):
    """Parameters that do not reach the functions: not passed by Globals as `!Ref Parameter`
    under the variable's name, or a variable the functions' source does not read."""
    variables = ((template.get("Globals") or {}).get("Function") or {}).get("Environment", {}).get("Variables", {})
    for parameter, variable in PARAMETER_VARIABLES.items():
        if parameter not in template.get("Parameters", {}):
            yield f"parameter {parameter} is gone; update PARAMETER_VARIABLES"
        if variables.get(variable) != {"Ref": parameter}:
            yield f"parameter {parameter} does not reach the functions: Globals sets {variable} to {variables.get(variable)!r}, not !Ref {parameter}"
        if f'"{variable}"' not in reader_source:
            yield f"the functions never read {variable} (functions/src/aws/*.rs), so parameter {parameter} is ignored"


def parameter_problems(specs, values):
    for name, spec in specs.items():
        value = str(values[name])
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            yield f"{name}={value!r} is not one of {spec['AllowedValues']}"
        # CloudFormation matches AllowedPattern against the whole value.
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            yield f"{name}={value!r} does not match {spec['AllowedPattern']}"
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                yield f"{name}={value!r} is not a number"
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                yield f"{name}={value} is below {spec['MinValue']}"
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                yield f"{name}={value} is above {spec['MaxValue']}"


def evaluate(expression, values):
    """A rule expression: the rule functions CloudFormation documents that the template uses."""
    if isinstance(expression, dict) and len(expression) == 1:
        (function, argument), = expression.items()
        if function == "Ref":
            return str(values[argument])
        if function == "Fn::Equals":
            return evaluate(argument[0], values) == evaluate(argument[1], values)
        if function == "Fn::Contains":
            return evaluate(argument[1], values) in [evaluate(v, values) for v in argument[0]]
        if function == "Fn::Not":
            return not evaluate(argument[0], values)
        if function == "Fn::Or":
            return any(evaluate(a, values) for a in argument)
        if function == "Fn::And":
            return all(evaluate(a, values) for a in argument)
        raise ValueError(f"rule function {function} is not evaluated by this check")
    if isinstance(expression, (str, int, float, bool)):
        return str(expression) if not isinstance(expression, bool) else expression
    raise ValueError(f"unexpected rule expression {expression!r}")


def refusals(template, overrides):
    specs = template.get("Parameters", {})
    values = {name: spec.get("Default", "") for name, spec in specs.items()}
    values.update(overrides)
    found = list(parameter_problems(specs, values))
    for name, rule in (template.get("Rules") or {}).items():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], values):
            continue
        for assertion in rule.get("Assertions", []):
            if not evaluate(assertion["Assert"], values):
                found.append(f"rule {name}: {assertion.get('AssertDescription', 'assertion failed')}")
    return found


def main(path):
    template, matches = decode(path)
    if template is None:
        print(f"{path}: cannot parse: {matches}")
        return 1
    wrong = 0
    for overrides, refused in CASES:
        found = refusals(template, overrides)
        if bool(found) != refused:
            wrong += 1
            verdict = f"refused ({'; '.join(found)})" if found else "accepted"
            print(f"{path}: parameters {overrides or 'defaults'} are {verdict}; expected {'refusal' if refused else 'acceptance'}")
    readers = os.path.join(os.path.dirname(path), "..", "functions", "src", "aws")
    reader_source = ""
    for name in sorted(os.listdir(readers)):
        if name.endswith(".rs"):
            with open(os.path.join(readers, name)) as f:
                reader_source += f.read()
    for problem in wiring_problems(template, reader_source):
        wrong += 1
        print(f"{path}: {problem}")
    # The wiring check must bite: a template that stops passing Height is caught.
    unwired = copy.deepcopy(template)
    unwired["Globals"]["Function"]["Environment"]["Variables"].pop("TREEMUX_HEIGHT", None)
    if not any("Height" in problem for problem in wiring_problems(unwired, reader_source)):
        wrong += 1
        print(f"{path}: the wiring check accepted a template that does not pass Height on")
    if not wrong:
        print(f"{path}: deploy-time validation gives the expected verdict on {len(CASES)} parameter sets; "
              f"{len(PARAMETER_VARIABLES)} job parameters reach the functions")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
