"""`make package`: one SAM template that cfn-lint accepts, wired to the stage's own resources."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from infra import stack
from tests.deploy.conftest import PACKAGED_STAGES, ROOT, VENV, Packaged

# Consumer function -> (logical id, queue resource, batch size), as app.py declares them.
CONSUMERS = {
    "process_tasks": ("ProcessTasks", "TasksQueue", 10),
    "handle_dead_letters": ("HandleDeadLetters", "DeadLetterQueue", 10),
}
FUNCTIONS = {"APIHandler": "api_handler", "ProcessTasks": "process_tasks", "HandleDeadLetters": "handle_dead_letters"}
# What a Lambda SQS event source mapping does with its function's role.
EVENT_SOURCE_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
LOG_ACTIONS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
# IAM authorises a batch call with its single-message action.
BATCH_ACTIONS = {
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "sqs:SendMessageBatch": "sqs:SendMessage",
}
# Which queue each call is made on (chalicelib/consumer.py and api.py): sends go to both queues
# (tasks from the API, poison messages to the DLQ); only the task consumer changes visibility.
EXPECTED_GRANTS = {
    "table/taskproc-{stage}-tasks": {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    },
    ":taskproc-{stage}-tasks": {"sqs:GetQueueUrl", "sqs:SendMessage", "sqs:ChangeMessageVisibility"}
    | EVENT_SOURCE_ACTIONS,
    ":taskproc-{stage}-dead-letters": {"sqs:GetQueueUrl", "sqs:SendMessage"} | EVENT_SOURCE_ACTIONS,
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


def _code_actions() -> set[str]:
    """The DynamoDB and SQS actions chalicelib calls, found by the operation names in its source."""
    session = botocore.session.get_session()
    operations = {}
    for service in ("dynamodb", "sqs"):
        for operation in session.get_service_model(service).operation_names:
            operations[xform_name(operation)] = f"{service}:{operation}"
    names = set()
    for path in (ROOT / "chalicelib").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    return {BATCH_ACTIONS.get(operations[name], operations[name]) for name in names & operations.keys()}


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
    for logical_id in [*FUNCTIONS, "RestAPI", "TasksQueue", "DeadLetterQueue", "TasksTable"]:
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
    tasks_scaling = resources["ProcessTasks"]["Properties"]["Events"]["ProcessTasksSqsEventSource"]["Properties"]
    assert tasks_scaling["ScalingConfig"] == {"MaximumConcurrency": int(config.environment["CONSUMER_MAX_CONCURRENCY"])}
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
        "TASKS_QUEUE": _sub(resources["TasksQueue"]["Properties"]["QueueName"], parameters),
        "DEAD_LETTER_QUEUE": _sub(resources["DeadLetterQueue"]["Properties"]["QueueName"], parameters),
        "MAX_ATTEMPTS": parameters["MaxAttempts"],
    }
    redrive = resources["TasksQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == {"Ref": "MaxAttempts"}
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
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


def test_roles_carry_the_stage_policy_file(package: Packaged) -> None:
    policy = json.loads((ROOT / ".chalice" / f"policy-{package.stage}.json").read_text())
    roles = package.resources_of_type("AWS::IAM::Role")
    assert len(roles) == len(FUNCTIONS)
    for role in roles.values():
        assert [p["PolicyDocument"] for p in role["Properties"]["Policies"]] == [policy]


def test_no_resource_is_a_wildcard_except_for_logs(package: Packaged) -> None:
    for statement in _statements(package):
        assert statement["Effect"] == "Allow"
        actions = set(_as_list(statement["Action"]))
        for resource in _as_list(statement["Resource"]):
            if actions <= LOG_ACTIONS:
                assert resource.startswith("arn:aws:logs:"), statement
                continue
            assert "*" not in resource.split(":", 5)[-1], statement
            assert resource != "*", statement


def test_the_policy_grants_only_what_the_code_and_its_event_sources_use(package: Packaged) -> None:
    code_actions = _code_actions()
    assert code_actions == {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
        "sqs:GetQueueUrl", "sqs:SendMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
    }, "chalicelib calls a different set of AWS actions: update the policies and this test"
    granted: dict[str, set[str]] = {}
    for statement in _statements(package):
        for resource in _as_list(statement["Resource"]):
            granted.setdefault(resource, set()).update(_as_list(statement["Action"]))
    data_grants = {resource: actions for resource, actions in granted.items() if not actions <= LOG_ACTIONS}
    expected = {
        suffix.format(stage=package.stage): actions for suffix, actions in EXPECTED_GRANTS.items()
    }
    assert len(data_grants) == len(expected)
    for resource, actions in data_grants.items():
        matches = [suffix for suffix in expected if resource.endswith(suffix)]
        assert len(matches) == 1, resource
        assert actions == expected[matches[0]], resource
        assert actions <= code_actions | EVENT_SOURCE_ACTIONS, resource
    assert set().union(*data_grants.values()) == code_actions | EVENT_SOURCE_ACTIONS


def test_the_zip_holds_only_the_app_and_its_runtime_requirements(package: Packaged) -> None:
    names = package.zip_names()
    top_level = {name.split("/")[0] for name in names}
    assert "app.py" in top_level and "chalicelib" in top_level
    shipped_lib = {name for name in names if name.startswith("chalicelib/")}
    assert shipped_lib == {path.relative_to(ROOT).as_posix() for path in (ROOT / "chalicelib").rglob("*.py")}
    forbidden_names = ("tests", "local", "tools", "infra", "moto", "boto3", "botocore", "cfn_lint", "pytest")
    for forbidden in forbidden_names:
        assert not any(name == forbidden or name.startswith(f"{forbidden}-") for name in top_level), forbidden
    allowed = {"app.py", "chalicelib", "chalice"} | _runtime_requirement_names()
    assert top_level <= allowed, sorted(top_level - allowed)


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
    return names - {"__pycache__"}


def test_write_routes_require_an_api_key_exactly_where_the_stage_asks(package: Packaged) -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    wanted = config["stages"][package.stage]["environment_variables"].get("API_KEY_REQUIRED", "false") == "true"
    (api,) = package.resources_of_type("AWS::Serverless::Api").values()
    paths = api["Properties"]["DefinitionBody"]["paths"]
    for path, method in (("/publish", "post"), ("/tasks", "post")):
        assert ("security" in paths[path][method]) is wanted, (path, paths[path][method].get("security"))
    for path in ("/tasks/{task_id}", "/health", "/openapi.json"):
        assert "security" not in paths[path]["get"], path
