"""infra/resources.yaml and monitoring.yaml: what they promise, and that moto's CloudFormation builds them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra import stack

TEMPLATE = stack.load_template()
RESOURCES = TEMPLATE["Resources"]
MONITORING = stack.load_template(stack.MONITORING)
ACCESS = stack.load_template(stack.ACCESS)
FOURTEEN_DAYS = 14 * 24 * 3600
# The high and low priority classes' queues, by logical id; the default class's is TasksQueue.
CLASS_QUEUES = {"HighPriorityTasksQueue": "tasks-high", "LowPriorityTasksQueue": "tasks-low"}
TASK_QUEUES = ("TasksQueue", *CLASS_QUEUES)
# The listing index of the API contract: sparse, write-sharded, projecting what a summary shows.
LISTING_INDEX = {
    "IndexName": "by-status-v2",
    "KeySchema": [
        {"AttributeName": "statusShard", "KeyType": "HASH"},
        {"AttributeName": "statusSort", "KeyType": "RANGE"},
    ],
    "Projection": {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": [
            "type",
            "status",
            "attempts",
            "maxAttempts",
            "createdAt",
            "updatedAt",
            "lastError",
            "priority",
            "tags",
        ],
    },
}
# The index it replaces, exactly as deployed stacks have it: an update may create or delete one
# index, so this release creates the new one and leaves this one as it is.
RETIRED_INDEX = {
    "IndexName": "by-status",
    "KeySchema": LISTING_INDEX["KeySchema"],
    "Projection": {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["type", "status", "attempts", "maxAttempts", "createdAt", "updatedAt", "lastError"],
    },
}
OPERATOR_ROUTES = (
    "GET/tasks",
    "GET/stats",
    "GET/stuck",
    "POST/tasks/*/retry",
    "POST/tasks/*/cancel",
    "POST/retries",
    "GET/types",
    "GET/types/*",
    "POST/types/*/pause",
    "POST/types/*/resume",
    "GET/schedules",
    "POST/schedules",
    "GET/schedules/*",
    "PUT/schedules/*",
    "DELETE/schedules/*",
    "POST/schedules/*/pause",
    "POST/schedules/*/resume",
    "POST/schedules/*/trigger",
    "POST/schedules/*/backfill",
)

# moto's CloudFormation skips alarms and e-mail subscriptions with a warning; the packaged
# template's tests check those (tests/deploy/test_monitoring.py).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Tried to parse AWS..(CloudWatch..Alarm|SNS..Subscription) but:UserWarning"
)


@pytest.fixture
def cloudformation(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("cloudformation")


def test_the_parameter_and_resource_names_stay_as_the_offline_stack_uses_them() -> None:
    assert set(TEMPLATE["Parameters"]) == {"Stage", "MaxAttempts", "QueueVisibilityTimeout"}
    assert RESOURCES["TasksQueue"]["Properties"]["QueueName"] == {"Fn::Sub": "taskproc-${Stage}-tasks"}
    for queue, name in CLASS_QUEUES.items():
        assert RESOURCES[queue]["Properties"]["QueueName"] == {"Fn::Sub": f"taskproc-${{Stage}}-{name}"}
    assert RESOURCES["DeadLetterQueue"]["Properties"]["QueueName"] == {"Fn::Sub": "taskproc-${Stage}-dead-letters"}
    assert RESOURCES["TasksTable"]["Properties"]["TableName"] == {"Fn::Sub": "taskproc-${Stage}-tasks"}


def test_every_class_s_task_queue_dead_letters_into_the_one_dlq_after_max_attempts_receives() -> None:
    for queue in TASK_QUEUES:
        redrive = RESOURCES[queue]["Properties"]["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}, queue
        assert redrive["maxReceiveCount"] == {"Ref": "MaxAttempts"}, queue
    allow = RESOURCES["DeadLetterQueue"]["Properties"]["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    sources = [arn["Fn::Sub"].rsplit(":", 1)[-1] for arn in allow["sourceQueueArns"]]
    assert sources == ["taskproc-${Stage}-tasks", "taskproc-${Stage}-tasks-high", "taskproc-${Stage}-tasks-low"]


def test_the_dead_letter_queue_keeps_messages_longest() -> None:
    dead_letters = RESOURCES["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    assert dead_letters == FOURTEEN_DAYS
    for queue in TASK_QUEUES:
        tasks = RESOURCES[queue]["Properties"]["MessageRetentionPeriod"]
        assert tasks < dead_letters, "a dead letter keeps its first send time, so the DLQ must outlast the queue"


def test_every_queue_uses_the_visibility_parameter_and_is_encrypted() -> None:
    for queue in (*TASK_QUEUES, "DeadLetterQueue"):
        properties = RESOURCES[queue]["Properties"]
        assert properties["VisibilityTimeout"] == {"Ref": "QueueVisibilityTimeout"}, queue
        assert properties["SqsManagedSseEnabled"] is True, queue
    default = int(TEMPLATE["Parameters"]["QueueVisibilityTimeout"]["Default"])
    assert default >= stack.load_stage("dev").queue_visibility_timeout


def test_the_table_is_on_demand_recoverable_expiring_and_encrypted() -> None:
    properties = RESOURCES["TasksTable"]["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]


def test_the_listing_index_is_the_contracts_on_demand_and_keyed_by_strings() -> None:
    properties = RESOURCES["TasksTable"]["Properties"]
    indexes = {index["IndexName"]: index for index in properties["GlobalSecondaryIndexes"]}
    assert set(indexes) == {LISTING_INDEX["IndexName"], RETIRED_INDEX["IndexName"]}
    for expected in (LISTING_INDEX, RETIRED_INDEX):
        index = indexes[expected["IndexName"]]
        assert index["KeySchema"] == expected["KeySchema"]
        assert index["Projection"]["ProjectionType"] == "INCLUDE"
        projected = index["Projection"]["NonKeyAttributes"]
        assert sorted(projected) == sorted(set(projected)) == sorted(expected["Projection"]["NonKeyAttributes"])
        assert "ProvisionedThroughput" not in index, "on demand, like its table"
    types = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}
    assert types == {"id": "S", "statusShard": "S", "statusSort": "S"}


def test_the_code_reads_the_new_index_and_filters_only_on_what_it_projects() -> None:
    from chalicelib.tasks.index import INDEX_NAME, PROJECTED, RETIRED_INDEX_NAME

    assert (LISTING_INDEX["IndexName"], RETIRED_INDEX["IndexName"]) == (INDEX_NAME, RETIRED_INDEX_NAME)
    assert sorted(PROJECTED) == sorted(LISTING_INDEX["Projection"]["NonKeyAttributes"])
    assert {"type", "tags"} <= set(PROJECTED)  # what a listing's FilterExpression reads


def test_the_offline_template_holds_only_data_resources_and_monitoring_only_aws_ones() -> None:
    """moto's CloudFormation skips alarms, e-mail subscriptions, queue policies, usage plans and
    generated secrets, so they stay out of the offline stack."""
    assert {r["Type"] for r in RESOURCES.values()} == {"AWS::SQS::Queue", "AWS::DynamoDB::Table"}
    assert {r["Type"] for r in MONITORING["Resources"].values()} == {
        "AWS::IAM::ManagedPolicy",
        "AWS::SNS::Topic",
        "AWS::SNS::Subscription",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::Logs::LogGroup",
    }
    assert {r["Type"] for r in ACCESS["Resources"].values()} == {
        "AWS::SQS::QueuePolicy",
        "AWS::SecretsManager::Secret",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlan",
        "AWS::ApiGateway::UsagePlanKey",
    }
    combined = stack.aws_template()
    assert combined["Resources"] == {**RESOURCES, **MONITORING["Resources"], **ACCESS["Resources"]}
    assert combined["Parameters"] == {**TEMPLATE["Parameters"], **MONITORING["Parameters"], **ACCESS["Parameters"]}


def test_the_two_templates_may_not_define_one_name_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    clashing = json.loads(json.dumps(MONITORING))
    clashing["Parameters"]["Stage"]["Default"] = "prod"
    monkeypatch.setattr(
        stack, "load_template", lambda path=stack.TEMPLATE: TEMPLATE if path == stack.TEMPLATE else clashing
    )
    with pytest.raises(stack.StackError, match="Parameters Stage"):
        stack.aws_template()


def test_moto_creates_the_stack_from_the_template(cloudformation: Any) -> None:
    cloudformation.create_stack(
        StackName="taskproc-check",
        TemplateBody=stack.TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": "Stage", "ParameterValue": "check"}],
    )
    described = cloudformation.describe_stacks(StackName="taskproc-check")["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    assert outputs["TasksQueueName"] == "taskproc-check-tasks"
    assert outputs["HighPriorityTasksQueueName"] == "taskproc-check-tasks-high"
    assert outputs["LowPriorityTasksQueueName"] == "taskproc-check-tasks-low"
    assert outputs["DeadLetterQueueName"] == "taskproc-check-dead-letters"
    assert outputs["TasksTableName"] == "taskproc-check-tasks"
    table = boto3.client("dynamodb").describe_table(TableName="taskproc-check-tasks")["Table"]
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    assert indexes[LISTING_INDEX["IndexName"]]["KeySchema"] == LISTING_INDEX["KeySchema"]
    assert set(indexes) == {LISTING_INDEX["IndexName"], RETIRED_INDEX["IndexName"]}


def _parameters(cloudformation: Any, name: str = "taskproc-dev-data") -> dict[str, str]:
    parameters = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["Parameters"]
    return {p["ParameterKey"]: p["ParameterValue"] for p in parameters}


def test_deploy_stack_creates_updates_and_removes_the_stage_stack(cloudformation: Any) -> None:
    dev = stack.load_stage("dev")
    outputs = stack.deploy_stack(cloudformation, dev)
    assert outputs["TasksQueueName"] == "taskproc-dev-tasks"
    assert outputs["AlarmTopicArn"].endswith(":taskproc-dev-alarms")
    assert outputs["DashboardName"] == "taskproc-dev"
    assert stack.deploy_stack(cloudformation, dev) == outputs
    parameters = _parameters(cloudformation)
    assert {name: parameters[name] for name in dev.pinned_parameters()} == dev.pinned_parameters()
    assert parameters["RestApiId"] == ""
    assert stack.remove_stack(cloudformation, "dev") is True
    assert stack.remove_stack(cloudformation, "dev") is False


def test_the_dashboard_deployed_is_json_naming_the_stage(cloudformation: Any) -> None:
    stack.deploy_stack(cloudformation, stack.load_stage("dev"))
    body = json.loads(boto3.client("cloudwatch").get_dashboard(DashboardName="taskproc-dev")["DashboardBody"])
    lines = [line for widget in body["widgets"] for line in widget["properties"]["metrics"]]
    assert lines and all("${" not in json.dumps(line) for line in lines)
    assert {"taskproc-dev-tasks", "taskproc-dev-process_tasks", "dev"} <= {v for line in lines for v in line[:-1]}


def test_the_operator_policy_appears_once_the_api_id_is_known_and_names_only_that_api(cloudformation: Any) -> None:
    iam = boto3.client("iam")
    dev = stack.load_stage("dev")

    def operator_policies() -> list[dict[str, Any]]:
        return [p for p in iam.list_policies(Scope="Local")["Policies"] if p["PolicyName"] == "taskproc-dev-operator"]

    outputs = stack.deploy_stack(cloudformation, dev)
    assert "OperatorPolicyArn" not in outputs and operator_policies() == []

    # (moto keeps an update's conditional outputs as they were at creation, so the output is not checked here.)
    stack.deploy_stack(cloudformation, dev, rest_api_id="a1b2c3d4e5")
    (policy,) = operator_policies()
    version = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
    (statement,) = version["PolicyVersion"]["Document"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    prefix = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/api"
    assert sorted(statement["Resource"]) == sorted(f"{prefix}/{route}" for route in OPERATOR_ROUTES)


def test_parameters_set_once_survive_later_deploys_and_stage_ones_cannot_be_set(cloudformation: Any) -> None:
    dev = stack.load_stage("dev")
    overrides = {"AlarmEmail": "ops@example.com", "FailedSharePercentThreshold": "25"}
    stack.deploy_stack(cloudformation, dev, overrides=overrides)
    stack.deploy_stack(cloudformation, dev, rest_api_id="a1b2c3d4e5")
    parameters = _parameters(cloudformation)
    assert (parameters["AlarmEmail"], parameters["FailedSharePercentThreshold"]) == ("ops@example.com", "25")
    assert parameters["RestApiId"] == "a1b2c3d4e5"
    with pytest.raises(stack.StackError, match="MaxAttempts"):
        stack.deploy_stack(cloudformation, dev, overrides={"MaxAttempts": "9"})
    with pytest.raises(stack.StackError, match="no parameter 'AlarmMail'"):
        stack.deploy_stack(cloudformation, dev, overrides={"AlarmMail": "ops@example.com"})


def test_a_parameter_without_a_value_is_refused_before_aws_is_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert stack.main(["deploy", "dev", "--parameter", "AlarmEmail"]) == 1
    assert "--parameter wants NAME=VALUE, got 'AlarmEmail'" in capsys.readouterr().err


def test_the_api_id_comes_from_chalice_deploys_record(tmp_path: Path) -> None:
    assert stack.deployed_rest_api_id("dev", tmp_path) == ""
    record = {
        "schema_version": "2.0",
        "resources": [
            {"name": "api_handler", "resource_type": "lambda_function", "lambda_arn": "arn:aws:lambda:..."},
            {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "a1b2c3d4e5", "rest_api_url": "https://"},
        ],
    }
    (tmp_path / "dev.json").write_text(json.dumps(record))
    assert stack.deployed_rest_api_id("dev", tmp_path) == "a1b2c3d4e5"
    (tmp_path / "dev.json").write_text(json.dumps({"schema_version": "2.0", "resources": []}))
    assert stack.deployed_rest_api_id("dev", tmp_path) == ""


def test_every_stage_gets_a_visibility_timeout_of_six_consumer_timeouts() -> None:
    for name in ("dev", "prod"):
        config = stack.load_stage(name)
        assert config.queue_visibility_timeout == 6 * max(config.timeouts.values())


def test_a_lease_longer_than_the_visibility_timeout_is_refused(tmp_path: Path) -> None:
    config = json.loads(stack.CONFIG.read_text())
    config["stages"]["dev"]["environment_variables"]["LEASE_SECONDS"] = "600"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(stack.StackError, match="LEASE_SECONDS"):
        stack.load_stage("dev", path)


def test_the_merge_template_only_adds_to_chalice_resources_it_does_not_replace_them() -> None:
    merged = stack.merge_template(stack.load_stage("prod"))
    chalice_owned = {
        "ProcessTasks",
        "ProcessHighPriorityTasks",
        "ProcessLowPriorityTasks",
        "HandleDeadLetters",
        "APIHandler",
        "RestAPI",
        "ProcessTasksLogGroup",
        "ProcessHighPriorityTasksLogGroup",
        "ProcessLowPriorityTasksLogGroup",
        "HandleDeadLettersLogGroup",
        "Tick",
        "TickLogGroup",
    }
    for logical_id in chalice_owned:
        assert "Type" not in merged["Resources"][logical_id], "Chalice defines it; the merge adds to it"
    added = set(merged["Resources"]) - set(RESOURCES) - set(MONITORING["Resources"]) - set(ACCESS["Resources"])
    assert added == chalice_owned | {"ApiAccessLogGroup", "ApiGatewayLogRole", "ApiGatewayAccount"}


def test_every_priority_class_s_consumer_waits_for_its_own_queue_in_the_merge_template() -> None:
    merged = stack.merge_template(stack.load_stage("prod"))["Resources"]
    for logical_id, queue in {
        "ProcessTasks": "TasksQueue",
        "ProcessHighPriorityTasks": "HighPriorityTasksQueue",
        "ProcessLowPriorityTasks": "LowPriorityTasksQueue",
    }.items():
        assert queue in merged[logical_id]["DependsOn"], logical_id
        assert f"{logical_id}LogGroup" in merged[logical_id]["DependsOn"], logical_id
        assert merged[logical_id]["Properties"]["FunctionName"].endswith(stack_function(logical_id)), logical_id
        events = merged[logical_id]["Properties"]["Events"][f"{logical_id}SqsEventSource"]
        assert events["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"], logical_id
    assert set(stack.TASK_QUEUES) <= set(merged["APIHandler"]["DependsOn"])


def stack_function(logical_id: str) -> str:
    return {v[0]: k for k, v in stack.CONSUMERS.items()}[logical_id]


def test_a_priority_class_s_consumer_with_another_timeout_than_process_tasks_is_refused(tmp_path: Path) -> None:
    config = json.loads(stack.CONFIG.read_text())
    config["stages"]["dev"]["lambda_functions"]["process_low_priority_tasks"]["lambda_timeout"] = 60
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(stack.StackError, match="process_low_priority_tasks's lambda_timeout"):
        stack.load_stage("dev", path)


def test_the_merge_template_points_the_operator_policy_at_the_packaged_api() -> None:
    merged = stack.merge_template(stack.load_stage("dev"))
    assert "RestApiId" not in merged["Parameters"] and "HasRestApiId" not in merged["Conditions"]
    text = json.dumps(merged["Resources"]["OperatorPolicy"])
    assert '{"Ref": "RestAPI"}' in text and "RestApiId" not in text
    assert "Condition" not in merged["Outputs"]["OperatorPolicyArn"]
