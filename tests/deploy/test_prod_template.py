"""The packaged template's protections: usage plan and key, throttling, concurrency, logs, tracing,
a table no stack operation deletes, TLS-only queues, the cursor secret, and checkov's verdict."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import stack
from tests.deploy.conftest import PACKAGED_STAGES, ROOT, Packaged

FUNCTIONS = {
    "APIHandler": "api_handler",
    "ProcessTasks": "process_tasks",
    "ProcessHighPriorityTasks": "process_high_priority_tasks",
    "ProcessLowPriorityTasks": "process_low_priority_tasks",
    "HandleDeadLetters": "handle_dead_letters",
    "Tick": "tick",
}
LOG_GROUPS = {
    "APIHandler": "ApiHandlerLogGroup",
    "ProcessTasks": "ProcessTasksLogGroup",
    "ProcessHighPriorityTasks": "ProcessHighPriorityTasksLogGroup",
    "ProcessLowPriorityTasks": "ProcessLowPriorityTasksLogGroup",
    "HandleDeadLetters": "HandleDeadLettersLogGroup",
    "Tick": "TickLogGroup",
}
QUEUES = ["TasksQueue", "HighPriorityTasksQueue", "LowPriorityTasksQueue", "DeadLetterQueue"]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def _config() -> dict[str, Any]:
    return dict(json.loads((ROOT / ".chalice" / "config.json").read_text()))


def _defaults(package: Packaged) -> dict[str, str]:
    return {name: str(p["Default"]) for name, p in package.template["Parameters"].items()}


def _ref_value(package: Packaged, value: Any) -> Any:
    """A parameter Ref resolved to its pinned default; anything else as it is."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in package.template["Parameters"]:
        return _defaults(package)[value["Ref"]]
    return value


@pytest.fixture(params=PACKAGED_STAGES)
def package(request: pytest.FixtureRequest, packaged: dict[str, Packaged]) -> Packaged:
    return packaged[request.param]


@pytest.fixture
def prod(packaged: dict[str, Packaged]) -> Packaged:
    return packaged["prod"]


def test_the_client_routes_key_sits_in_a_usage_plan_on_the_packaged_api_with_the_stage_s_throttling(
    package: Packaged,
) -> None:
    resources = package.template["Resources"]
    throttle = _config()["stages"][package.stage]["api_throttle"]
    assert resources["ApiKey"]["Type"] == "AWS::ApiGateway::ApiKey" and resources["ApiKey"]["Properties"]["Enabled"]
    plan = resources["UsagePlan"]
    assert "Condition" not in plan and "Condition" not in resources["ApiKey"]
    assert plan["Properties"]["ApiStages"] == [{"ApiId": {"Ref": "RestAPI"}, "Stage": {"Ref": "RestAPI.Stage"}}]
    limits = plan["Properties"]["Throttle"]
    assert (_ref_value(package, limits["RateLimit"]), _ref_value(package, limits["BurstLimit"])) == (
        str(throttle["rate_limit"]),
        str(throttle["burst_limit"]),
    )
    key = resources["UsagePlanKey"]["Properties"]
    assert key == {"KeyId": {"Ref": "ApiKey"}, "KeyType": "API_KEY", "UsagePlanId": {"Ref": "UsagePlan"}}
    assert package.template["Outputs"]["ApiKeyId"]["Value"] == {"Ref": "ApiKey"}


def test_every_route_of_the_api_stage_is_throttled_as_the_stage_says(package: Packaged) -> None:
    throttle = _config()["stages"][package.stage]["api_throttle"]
    (setting,) = package.template["Resources"]["RestAPI"]["Properties"]["MethodSettings"]
    assert (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    assert _ref_value(package, setting["ThrottlingRateLimit"]) == str(throttle["rate_limit"])
    assert _ref_value(package, setting["ThrottlingBurstLimit"]) == str(throttle["burst_limit"])


def test_prod_reserves_each_function_s_concurrency_as_its_stage_settings_say(prod: Packaged) -> None:
    settings = _config()["stages"]["prod"]["lambda_functions"]
    resources = prod.template["Resources"]
    for logical_id, function in FUNCTIONS.items():
        reserved = resources[logical_id]["Properties"]["ReservedConcurrentExecutions"]
        assert reserved == settings[function]["reserved_concurrency"] > 0, function
    # A task consumer's event source may not scale past what the function may run.
    for logical_id in ("ProcessTasks", "ProcessHighPriorityTasks", "ProcessLowPriorityTasks"):
        scaling = resources[logical_id]["Properties"]["Events"][f"{logical_id}SqsEventSource"]["Properties"]
        reserved = settings[FUNCTIONS[logical_id]]["reserved_concurrency"]
        assert scaling["ScalingConfig"]["MaximumConcurrency"] <= reserved, logical_id


def test_every_function_and_the_access_log_have_a_log_group_kept_for_the_stage_s_retention(
    package: Packaged,
) -> None:
    retention = stack.load_stage(package.stage).log_retention_days
    assert retention == _config()["log_retention_in_days"] == 30
    resources = package.template["Resources"]
    for logical_id, group_id in LOG_GROUPS.items():
        group = resources[group_id]
        assert group["Type"] == "AWS::Logs::LogGroup"
        name = resources[logical_id]["Properties"]["FunctionName"]
        assert group["Properties"]["LogGroupName"] == f"/aws/lambda/{name}", logical_id
        assert int(_ref_value(package, group["Properties"]["RetentionInDays"])) == retention, logical_id
        assert group_id in resources[logical_id]["DependsOn"], "the stack, not the runtime, creates the group"
    access = resources["ApiAccessLogGroup"]
    assert int(_ref_value(package, access["Properties"]["RetentionInDays"])) == retention


def test_the_api_writes_an_access_log_as_json_to_its_log_group(package: Packaged) -> None:
    resources = package.template["Resources"]
    setting = resources["RestAPI"]["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(setting["Format"].replace("$context.", "context."))
    assert {"requestId", "status", "caller", "apiKeyId"} <= set(fields)
    # API Gateway writes logs only through the account's role, which the template sets.
    assert resources["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"] == {
        "Fn::GetAtt": ["ApiGatewayLogRole", "Arn"]
    }
    assert "ApiGatewayAccount" in resources["RestAPI"]["DependsOn"]


def test_tracing_is_active_on_the_api_and_every_function_exactly_where_the_stage_enables_xray(
    package: Packaged,
) -> None:
    xray = bool(_config()["stages"][package.stage].get("xray"))
    resources = package.template["Resources"]
    assert resources["RestAPI"]["Properties"]["TracingEnabled"] is xray
    for logical_id in FUNCTIONS:
        assert resources[logical_id]["Properties"]["Tracing"] == ("Active" if xray else "PassThrough"), logical_id
    assert _config()["stages"]["prod"]["xray"] is True


def test_the_prod_table_is_protected_and_retained_and_dev_s_is_not(packaged: dict[str, Packaged]) -> None:
    prod = packaged["prod"].template["Resources"]["TasksTable"]
    assert (prod["DeletionPolicy"], prod["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert prod["Properties"]["DeletionProtectionEnabled"] is True
    dev = packaged["dev"].template["Resources"]["TasksTable"]
    assert "DeletionPolicy" not in dev and "DeletionProtectionEnabled" not in dev["Properties"]


def test_make_deploy_says_where_to_read_the_api_key_once_the_stack_has_one() -> None:
    stage = stack.load_stage("dev")
    report = stack.deploy_report(stage, {"TasksTableName": "taskproc-dev-tasks", "ApiKeyId": "k3y1d"})
    assert "API key: aws apigateway get-api-key --api-key k3y1d --include-value --query value --output text" in report
    before_the_api = stack.deploy_report(stage, {"TasksTableName": "taskproc-dev-tasks"})
    assert not any(line.startswith("API key:") for line in before_the_api)
    assert any("usage plan or API key" in line for line in before_the_api)


def test_removing_a_retained_stage_says_the_table_stays_and_how_to_delete_it() -> None:
    note = stack.table_kept_note(stack.load_stage("prod"))
    assert "taskproc-prod-tasks stays" in note
    assert "--no-deletion-protection-enabled" in note and "aws dynamodb delete-table" in note


def test_every_queue_refuses_every_request_without_tls(package: Packaged) -> None:
    (policy,) = package.resources_of_type("AWS::SQS::QueuePolicy").values()
    properties = policy["Properties"]
    assert properties["Queues"] == [{"Ref": queue} for queue in QUEUES]
    assert set(package.resources_of_type("AWS::SQS::Queue")) == set(QUEUES)
    (statement,) = properties["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "sqs:*")
    assert statement["Resource"] == [{"Fn::GetAtt": [queue, "Arn"]} for queue in QUEUES]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def _secret_readers(package: Packaged) -> dict[str, list[dict[str, Any]]]:
    """Each function's statements that grant a Secrets Manager action."""
    resources = package.template["Resources"]
    readers = {}
    for logical_id in FUNCTIONS:
        role = resources[resources[logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]]
        statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        readers[logical_id] = [s for s in statements if "secretsmanager" in json.dumps(s["Action"])]
    return readers


@pytest.mark.parametrize(
    ("logical_id", "purpose", "setting", "readers"),
    [
        ("CursorSecret", "cursor", "CURSOR_SECRET_ID", {"APIHandler"}),
        (
            "CallbackSecret",
            "callback",
            "CALLBACK_SECRET_ID",
            {"ProcessTasks", "ProcessHighPriorityTasks", "ProcessLowPriorityTasks"},
        ),
    ],
)
def test_each_secret_is_generated_by_the_stack_and_only_the_functions_that_sign_with_it_may_read_it(
    package: Packaged, logical_id: str, purpose: str, setting: str, readers: set[str]
) -> None:
    resources = package.template["Resources"]
    secret = resources[logical_id]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert "SecretString" not in secret["Properties"]
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32
    name = f"taskproc-{package.stage}-{purpose}"
    assert secret["Properties"]["Name"] == {"Fn::Sub": f"taskproc-${{Stage}}-{purpose}"} and _defaults(package)["Stage"]
    for function in FUNCTIONS:
        assert resources[function]["Properties"]["Environment"]["Variables"][setting] == name
    pattern = f"arn:aws:secretsmanager:*:*:secret:{name}-??????"
    granted = {
        function
        for function, statements in _secret_readers(package).items()
        for statement in statements
        if statement["Resource"] == pattern
    }
    assert granted == readers
    for statements in _secret_readers(package).values():
        for statement in statements:
            assert statement["Action"] == ["secretsmanager:GetSecretValue"]


def test_every_deployed_stage_names_its_cursor_secret_and_only_local_does_not() -> None:
    stages = _config()["stages"]
    named = {stage: s["environment_variables"].get("CURSOR_SECRET_ID") for stage, s in stages.items()}
    assert named == {"dev": "taskproc-dev-cursor", "prod": "taskproc-prod-cursor", "local": None}


def test_every_deployed_stage_names_its_callback_secret_and_starts_with_callbacks_off() -> None:
    stages = _config()["stages"]
    named = {stage: s["environment_variables"].get("CALLBACK_SECRET_ID") for stage, s in stages.items()}
    assert named == {"dev": "taskproc-dev-callback", "prod": "taskproc-prod-callback", "local": None}
    allowed = {stage: s["environment_variables"].get("CALLBACK_ALLOWED_HOSTS") for stage, s in stages.items()}
    assert allowed == {"dev": "", "prod": "", "local": None}


def _skips_in(template: dict[str, Any]) -> dict[tuple[str, str], str]:
    skips = {}
    for logical_id, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            skips[(logical_id, skip["id"])] = skip.get("comment", "")
    return skips


def test_every_checkov_skip_in_the_infra_files_carries_a_reason() -> None:
    for path in sorted((ROOT / "infra").glob("*.yaml")):
        for (logical_id, check), comment in _skips_in(yaml.safe_load(path.read_text())).items():
            assert len(comment.split()) >= 8, f"{path.name}: {logical_id} skips {check} without a reason"


@pytest.mark.skipif(not CHECKOV.exists(), reason="no .venv-checkov: `make checkov` makes it")
def test_checkov_fails_nothing_on_the_prod_template_and_skips_only_what_the_template_says(prod: Packaged) -> None:
    result = subprocess.run(
        [
            str(CHECKOV),
            "--file",
            str(prod.template_path),
            "--framework",
            "cloudformation",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "LOG_LEVEL": "ERROR"},
    )
    report = json.loads(result.stdout)
    assert report["summary"]["failed"] == 0, [c["check_id"] for c in report["results"]["failed_checks"]]
    assert report["summary"]["passed"] > 0
    skipped = {(c["resource"].split(".", 1)[1], c["check_id"]) for c in report["results"]["skipped_checks"]}
    # Every skip is one checkov applied: none is left over from a check that no longer fires.
    assert skipped == set(_skips_in(prod.template))


def test_the_makefile_runs_checkov_pinned_from_its_own_environment_as_part_of_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "CHECKOV_VERSION := 3." in makefile and "checkov==$(CHECKOV_VERSION)" in makefile
    test_target = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "checkov" in test_target.split()
    assert "checkov" not in Path(ROOT / "requirements-dev.txt").read_text()
