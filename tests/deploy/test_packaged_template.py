"""`make package`: one SAM template that cfn-lint accepts, wired to the stage's own resources."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from chalicelib.tasks.index import INDEX_NAME
from infra import stack
from tests.deploy.conftest import PACKAGED_STAGES, ROOT, VENV, Packaged

# Consumer function -> (logical id, queue resource, batch size), as app.py declares them.
CONSUMERS = {
    "process_tasks": ("ProcessTasks", "TasksQueue", 10),
    "process_high_priority_tasks": ("ProcessHighPriorityTasks", "HighPriorityTasksQueue", 10),
    "process_low_priority_tasks": ("ProcessLowPriorityTasks", "LowPriorityTasksQueue", 10),
    "handle_dead_letters": ("HandleDeadLetters", "DeadLetterQueue", 10),
}
# Each task consumer's event source -> the stage variable giving its maximum concurrency.
MAX_CONCURRENCY = {
    "ProcessTasks": "CONSUMER_MAX_CONCURRENCY",
    "ProcessHighPriorityTasks": "HIGH_PRIORITY_MAX_CONCURRENCY",
    "ProcessLowPriorityTasks": "LOW_PRIORITY_MAX_CONCURRENCY",
}
FUNCTIONS = {
    "APIHandler": "api_handler",
    "ProcessTasks": "process_tasks",
    "ProcessHighPriorityTasks": "process_high_priority_tasks",
    "ProcessLowPriorityTasks": "process_low_priority_tasks",
    "HandleDeadLetters": "handle_dead_letters",
    "Tick": "tick",
}
# Actions IAM accepts only on "*": they have no resource-level permissions.
UNSCOPABLE_ACTIONS = {"cloudwatch:GetMetricData", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# The template makes every function's log group, so no function may create one.
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}

# Who may call each route on a deployed stage: the contract. A route app.py adds must get a row.
API_KEY = "the stage's API key where API_KEY_REQUIRED is true, nothing otherwise"
IAM = "IAM (SigV4), on every stage"
OPEN = "anyone"
ROUTE_AUTHORIZATION = {
    ("/publish", "POST"): API_KEY,
    ("/publish/batch", "POST"): API_KEY,
    ("/tasks", "POST"): API_KEY,
    ("/tasks/{task_id}", "GET"): API_KEY,
    ("/workflows", "POST"): API_KEY,
    ("/workflows/{workflow_id}", "GET"): API_KEY,
    ("/tasks", "GET"): IAM,
    ("/stats", "GET"): IAM,
    ("/stuck", "GET"): IAM,
    ("/tasks/{task_id}/retry", "POST"): IAM,
    ("/tasks/{task_id}/cancel", "POST"): IAM,
    ("/retries", "POST"): IAM,
    ("/types", "GET"): IAM,
    ("/types/{type}", "GET"): IAM,
    ("/types/{type}/pause", "POST"): IAM,
    ("/types/{type}/resume", "POST"): IAM,
    ("/schedules", "POST"): IAM,
    ("/schedules", "GET"): IAM,
    ("/schedules/{schedule_id}", "GET"): IAM,
    ("/schedules/{schedule_id}", "PUT"): IAM,
    ("/schedules/{schedule_id}", "DELETE"): IAM,
    ("/schedules/{schedule_id}/pause", "POST"): IAM,
    ("/schedules/{schedule_id}/resume", "POST"): IAM,
    ("/schedules/{schedule_id}/trigger", "POST"): IAM,
    ("/schedules/{schedule_id}/backfill", "POST"): IAM,
    ("/health", "GET"): OPEN,
    ("/openapi.json", "GET"): OPEN,
}


def _sub(value: Any, parameters: dict[str, str]) -> Any:
    """Resolve the Fn::Sub and Ref forms the template uses, with the parameters' defaults."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        return re.sub(r"\$\{(\w+)\}", lambda m: parameters.get(m.group(1), m.group(0)), value["Fn::Sub"])
    if isinstance(value, dict) and "Ref" in value:
        return parameters[value["Ref"]]
    return value


def _defaults(packaged: Packaged) -> dict[str, str]:
    return {name: str(p["Default"]) for name, p in packaged.template["Parameters"].items()}


def _statements(packaged: Packaged) -> list[dict[str, Any]]:
    statements = []
    for role in packaged.resources_of_type("AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            statements += policy["PolicyDocument"]["Statement"]
    return statements


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@pytest.fixture(params=PACKAGED_STAGES)
def package(request: pytest.FixtureRequest, packaged: dict[str, Packaged]) -> Packaged:
    return packaged[request.param]


def test_cfn_lint_accepts_the_packaged_template(package: Packaged) -> None:
    result = subprocess.run(
        [str(VENV / "bin" / "cfn-lint"), str(package.template_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_template_holds_the_functions_and_the_data_resources(package: Packaged) -> None:
    resources = package.template["Resources"]
    queues = ["TasksQueue", "HighPriorityTasksQueue", "LowPriorityTasksQueue", "DeadLetterQueue"]
    for logical_id in [*FUNCTIONS, "RestAPI", *queues, "TasksTable"]:
        assert logical_id in resources
    assert set(package.resources_of_type("AWS::Serverless::Function")) == set(FUNCTIONS)


def test_each_consumer_polls_its_own_queue_with_the_configured_batch_and_concurrency(package: Packaged) -> None:
    config = stack.load_stage(package.stage)
    parameters = _defaults(package)
    resources = package.template["Resources"]
    for function, (logical_id, queue, batch_size) in CONSUMERS.items():
        events = resources[logical_id]["Properties"]["Events"]
        assert list(events) == [f"{logical_id}SqsEventSource"], function
        event = events[f"{logical_id}SqsEventSource"]
        assert event["Type"] == "SQS"
        queue_name = _sub(resources[queue]["Properties"]["QueueName"], parameters)
        queue_arn = _sub(event["Properties"]["Queue"], parameters)
        assert queue_arn.endswith(f":sqs:${{AWS::Region}}:${{AWS::AccountId}}:{queue_name}"), function
        assert event["Properties"]["BatchSize"] == batch_size
        assert queue in resources[logical_id]["DependsOn"], "the mapping must wait for its queue"
    for logical_id, setting in MAX_CONCURRENCY.items():
        scaling = resources[logical_id]["Properties"]["Events"][f"{logical_id}SqsEventSource"]["Properties"]
        assert scaling["ScalingConfig"] == {"MaximumConcurrency": int(config.environment[setting])}, logical_id
    dead_letters = resources["HandleDeadLetters"]["Properties"]["Events"]["HandleDeadLettersSqsEventSource"]
    assert "ScalingConfig" not in dead_letters["Properties"]


def test_event_sources_report_item_failures_exactly_where_the_consumers_return_them(package: Packaged) -> None:
    resources = package.template["Resources"]
    for function, (logical_id, _, _) in CONSUMERS.items():
        properties = resources[logical_id]["Properties"]
        reports = properties["Environment"]["Variables"]["REPORT_BATCH_ITEM_FAILURES"] == "true"
        event = properties["Events"][f"{logical_id}SqsEventSource"]["Properties"]
        expected = ["ReportBatchItemFailures"] if reports else None
        assert event.get("FunctionResponseTypes") == expected, function
    assert stack.load_stage("prod").reports_batch_item_failures, "prod is the packaged stage that reports them"
    assert not stack.load_stage("dev").reports_batch_item_failures, "dev is deployed with chalice deploy"


def test_every_function_environment_names_the_stage_resources(package: Packaged) -> None:
    parameters = _defaults(package)
    resources = package.template["Resources"]
    assert parameters["Stage"] == package.stage
    expected = {
        "TASKS_TABLE": _sub(resources["TasksTable"]["Properties"]["TableName"], parameters),
        "FLOW_TABLE": _sub(resources["FlowTable"]["Properties"]["TableName"], parameters),
        "SCHEDULES_TABLE": _sub(resources["SchedulesTable"]["Properties"]["TableName"], parameters),
        "TASKS_QUEUE": _sub(resources["TasksQueue"]["Properties"]["QueueName"], parameters),
        "HIGH_PRIORITY_QUEUE": _sub(resources["HighPriorityTasksQueue"]["Properties"]["QueueName"], parameters),
        "LOW_PRIORITY_QUEUE": _sub(resources["LowPriorityTasksQueue"]["Properties"]["QueueName"], parameters),
        "DEAD_LETTER_QUEUE": _sub(resources["DeadLetterQueue"]["Properties"]["QueueName"], parameters),
        "MAX_ATTEMPTS": parameters["MaxAttempts"],
    }
    for queue in ("TasksQueue", "HighPriorityTasksQueue", "LowPriorityTasksQueue"):
        redrive = resources[queue]["Properties"]["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == {"Ref": "MaxAttempts"}, queue
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}, queue
    for logical_id, function in FUNCTIONS.items():
        variables = resources[logical_id]["Properties"]["Environment"]["Variables"]
        assert {name: variables[name] for name in expected} == expected, function
        assert variables == stack.load_stage(package.stage).environment, function


def test_parameters_are_pinned_to_the_stage_configuration(package: Packaged) -> None:
    parameters = package.template["Parameters"]
    for name, value in stack.load_stage(package.stage).parameters().items():
        assert parameters[name]["AllowedValues"] == [value], name


def test_visibility_timeouts_are_at_least_six_consumer_timeouts_and_outlast_the_lease(package: Packaged) -> None:
    parameters = _defaults(package)
    resources = package.template["Resources"]
    for function, (logical_id, queue, _) in CONSUMERS.items():
        timeout = resources[logical_id]["Properties"]["Timeout"]
        visibility = int(_sub(resources[queue]["Properties"]["VisibilityTimeout"], parameters))
        assert visibility >= 6 * timeout, function
        lease = float(resources[logical_id]["Properties"]["Environment"]["Variables"]["LEASE_SECONDS"])
        assert visibility > lease, function


def test_memory_and_timeouts_follow_the_stage_configuration(package: Packaged) -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][package.stage]
    resources = package.template["Resources"]
    for logical_id, function in FUNCTIONS.items():
        properties = resources[logical_id]["Properties"]
        settings = config["lambda_functions"][function]
        assert (properties["Timeout"], properties["MemorySize"]) == (
            settings["lambda_timeout"],
            settings["lambda_memory_size"],
        )


def _role_of(package: Packaged, function_id: str) -> str:
    return str(package.template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0])


def test_each_function_has_its_own_role_carrying_its_own_policy_file(package: Packaged) -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][package.stage]
    roles = package.resources_of_type("AWS::IAM::Role")
    function_roles = {logical_id: _role_of(package, logical_id) for logical_id in FUNCTIONS}
    assert len(set(function_roles.values())) == len(FUNCTIONS), function_roles
    for logical_id, function in FUNCTIONS.items():
        policy_file = config["lambda_functions"][function]["iam_policy_file"]
        assert policy_file == f"policy-{package.stage}-{function}.json"
        policy = json.loads((ROOT / ".chalice" / policy_file).read_text())
        role = roles[function_roles[logical_id]]
        assert [p["PolicyDocument"] for p in role["Properties"]["Policies"]] == [policy], function
        assert "ManagedPolicyArns" not in role["Properties"], function


def test_no_resource_is_a_wildcard_except_the_secret_s_suffix_and_what_iam_cannot_scope(package: Packaged) -> None:
    resources = package.template["Resources"]
    names = {logical_id: resources[logical_id]["Properties"]["FunctionName"] for logical_id in FUNCTIONS}
    for logical_id in FUNCTIONS:
        role = resources[_role_of(package, logical_id)]
        for policy in role["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Effect"] == "Allow"
                actions = set(_as_list(statement["Action"]))
                for resource in _as_list(statement["Resource"]):
                    if actions <= LOG_ACTIONS:
                        assert resource == f"arn:aws:logs:*:*:log-group:/aws/lambda/{names[logical_id]}:*", statement
                        continue
                    if resource == "*":
                        assert actions <= UNSCOPABLE_ACTIONS, statement
                        continue
                    # A secret's ARN ends in six random characters, which IAM's docs match with "??????".
                    secret = actions == {"secretsmanager:GetSecretValue"}
                    scoped = resource.removesuffix("-??????") if secret else resource
                    assert "*" not in scoped.split(":", 5)[-1] and "?" not in scoped, statement


def _granted(package: Packaged) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for statement in _statements(package):
        for resource in _as_list(statement["Resource"]):
            granted.setdefault(resource, set()).update(_as_list(statement["Action"]))
    return granted


def test_listing_and_the_ticker_may_query_their_indexes_and_only_two_operator_listings_scan(package: Packaged) -> None:
    table = f"arn:aws:dynamodb:*:*:table/taskproc-{package.stage}-tasks"
    due = f"arn:aws:dynamodb:*:*:table/taskproc-{package.stage}-schedules/index/by-due"
    # GET /schedules and GET /stuck, operators' listings, are bounded and paged Scans of the
    # schedules table and the task table (docs/schedules.md and docs/operations.md state their
    # cost); no other table is ever scanned.
    schedules = f"arn:aws:dynamodb:*:*:table/taskproc-{package.stage}-schedules"
    granted = _granted(package)
    assert "dynamodb:Query" in granted[f"{table}/index/{INDEX_NAME}"]
    assert "dynamodb:Query" in granted[due]
    for resource, actions in granted.items():
        assert "dynamodb:Scan" not in actions or resource in (schedules, table), resource
        if resource not in (f"{table}/index/{INDEX_NAME}", due):
            assert "dynamodb:Query" not in actions, resource


def test_the_zip_holds_only_the_app_and_its_runtime_requirements(package: Packaged) -> None:
    names = package.zip_names()
    top_level = {name.split("/")[0] for name in names}
    assert "app.py" in top_level and "chalicelib" in top_level
    shipped_lib = {name for name in names if name.startswith("chalicelib/")}
    sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / "chalicelib").rglob("*.py")}
    # Each module with its bytecode, for the stage's Python (the template's Runtime is this interpreter's).
    bytecode = {importlib.util.cache_from_source(source) for source in sources}
    assert shipped_lib == sources | bytecode
    forbidden_names = ("tests", "local", "tools", "infra", "moto", "boto3", "botocore", "cfn_lint", "pytest")
    for forbidden in forbidden_names:
        assert not any(name == forbidden or name.startswith(f"{forbidden}-") for name in top_level), forbidden
    allowed = {"app.py", "chalicelib", "chalice"} | _runtime_requirement_names()
    assert top_level <= allowed, sorted(top_level - allowed)


def test_the_zip_s_bytecode_is_checked_against_its_sources_for_the_functions_python(package: Packaged) -> None:
    # A timestamp .pyc would be refused after the zip's 2-second timestamps, and one for another Python
    # ignored: either way each cold start would compile chalicelib from source.
    runtimes = {
        resource["Properties"].get("Runtime", package.template.get("Globals", {}).get("Function", {}).get("Runtime"))
        for resource in package.template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert runtimes == {f"python{sys.version_info.major}.{sys.version_info.minor}"}
    with zipfile.ZipFile(package.zip_path) as archive:
        for source in (name for name in archive.namelist() if name.startswith("chalicelib/") and name.endswith(".py")):
            pyc = archive.read(importlib.util.cache_from_source(source))
            assert pyc[:4] == importlib.util.MAGIC_NUMBER, source
            assert int.from_bytes(pyc[4:8], "little") == 0b11, f"{source}: not a checked-hash .pyc"
            assert pyc[8:16] == importlib.util.source_hash(archive.read(source)), f"{source}: stale bytecode"


def test_the_zip_is_small(package: Packaged) -> None:
    size = package.zip_path.stat().st_size
    assert size < 6 * 1024 * 1024, f"deployment.zip is {size} bytes"


def _runtime_requirement_names() -> set[str]:
    """Top-level names of the distributions requirements.txt pulls in (as installed here)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    pending = [
        Requirement(line).name
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    seen: set[str] = set()
    names: set[str] = set()
    while pending:
        name = pending.pop()
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        names |= {Path(str(file)).parts[0] for file in dist.files or [] if not str(file).startswith("..")}
        for requirement in dist.requires or []:
            parsed = Requirement(requirement)
            if parsed.marker is None or parsed.marker.evaluate({"extra": ""}):
                pending.append(parsed.name)
    # A wheel's `<name>-<version>.data` directory (jmespath's holds a script) is installed
    # elsewhere here, but Chalice's packager keeps it in the zip.
    names |= {name.removesuffix(".dist-info") + ".data" for name in names if name.endswith(".dist-info")}
    return names - {"__pycache__"}


def _operations(package: Packaged) -> dict[tuple[str, str], dict[str, Any]]:
    """(path, METHOD) -> the route's operation in the API document API Gateway imports."""
    paths = package.template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    return {
        (path, method.upper()): operation for path, methods in paths.items() for method, operation in methods.items()
    }


def test_every_route_has_the_authorization_its_table_entry_says(package: Packaged) -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    key_required = config["stages"][package.stage]["environment_variables"].get("API_KEY_REQUIRED", "false") == "true"
    expected_security = {
        API_KEY: [{"api_key": []}] if key_required else None,
        IAM: [{"sigv4": []}],
        OPEN: None,
    }
    operations = _operations(package)
    unlisted = sorted(set(operations) - set(ROUTE_AUTHORIZATION))
    assert not unlisted, f"routes with no entry in ROUTE_AUTHORIZATION (say who may call them): {unlisted}"
    missing = sorted(set(ROUTE_AUTHORIZATION) - set(operations))
    assert not missing, f"routes in ROUTE_AUTHORIZATION that app.py does not serve: {missing}"
    wrong = {
        route: (kind, operation.get("security"))
        for route, operation in operations.items()
        if operation.get("security") != expected_security[(kind := ROUTE_AUTHORIZATION[route])]
    }
    assert not wrong, f"stage {package.stage} (API_KEY_REQUIRED={key_required}): {wrong}"


def test_the_security_schemes_are_api_gateway_s_api_key_and_sigv4_and_nothing_else(package: Packaged) -> None:
    body = package.template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    schemes = body.get("securityDefinitions", {})
    assert "sigv4" in schemes, "no route uses IAMAuthorizer, though the operator routes must"
    assert schemes["sigv4"] == {
        "in": "header",
        "type": "apiKey",
        "name": "Authorization",
        "x-amazon-apigateway-authtype": "awsSigv4",
    }
    if any(operation.get("security") == [{"api_key": []}] for operation in _operations(package).values()):
        assert schemes.pop("api_key") == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert set(schemes) == {"sigv4"}


def test_prod_asks_for_the_api_key_and_dev_does_not() -> None:
    """The table's API_KEY rows mean something only if some stage requires the key."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    stages = config["stages"]
    required = {stage: stages[stage]["environment_variables"]["API_KEY_REQUIRED"] for stage in PACKAGED_STAGES}
    assert required == {"dev": "false", "prod": "true"}


def _resolve_arn(value: dict[str, Any], names: dict[str, str]) -> str:
    """An Fn::Sub (plain or with its own variables) resolved with `names`."""
    template, variables = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
    values = {**names, **{key: f"<{v['Ref']}>" for key, v in variables.items()}}
    return re.sub(r"\$\{([\w:]+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def test_the_operator_policy_grants_invoke_on_exactly_the_iam_routes_of_this_api(package: Packaged) -> None:
    resources = package.template["Resources"]
    policy = resources["OperatorPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    assert "Condition" not in policy, "the packaged template always knows its API"
    parameters = _defaults(package)
    assert _sub(policy["Properties"]["ManagedPolicyName"], parameters) == f"taskproc-{package.stage}-operator"
    stage_name = resources["RestAPI"]["Properties"]["StageName"]
    assert parameters["ApiStage"] == stage_name
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and _as_list(statement["Action"]) == ["execute-api:Invoke"]
    granted = {_resolve_arn(resource, parameters) for resource in statement["Resource"]}
    prefix = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:<RestAPI>"
    expected = {
        f"{prefix}/{stage_name}/{method}/{re.sub(r'{[^}]+}', '*', path.lstrip('/'))}"
        for (path, method), kind in ROUTE_AUTHORIZATION.items()
        if kind == IAM
    }
    assert granted == expected
    assert package.template["Outputs"]["OperatorPolicyArn"] == {"Value": {"Ref": "OperatorPolicy"}}
