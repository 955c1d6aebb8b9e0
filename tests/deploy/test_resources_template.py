"""infra/resources.yaml: what the data resources promise, and that moto's CloudFormation builds them."""

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
FOURTEEN_DAYS = 14 * 24 * 3600


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
    assert RESOURCES["DeadLetterQueue"]["Properties"]["QueueName"] == {"Fn::Sub": "taskproc-${Stage}-dead-letters"}
    assert RESOURCES["TasksTable"]["Properties"]["TableName"] == {"Fn::Sub": "taskproc-${Stage}-tasks"}


def test_the_task_queue_dead_letters_after_max_attempts_receives() -> None:
    redrive = RESOURCES["TasksQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "MaxAttempts"}
    allow = RESOURCES["DeadLetterQueue"]["Properties"]["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    assert allow["sourceQueueArns"][0]["Fn::Sub"].endswith(":taskproc-${Stage}-tasks")


def test_the_dead_letter_queue_keeps_messages_longest() -> None:
    dead_letters = RESOURCES["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    tasks = RESOURCES["TasksQueue"]["Properties"]["MessageRetentionPeriod"]
    assert dead_letters == FOURTEEN_DAYS
    assert tasks < dead_letters, "a dead letter keeps its first send time, so the DLQ must outlast the queue"


def test_both_queues_use_the_visibility_parameter_and_are_encrypted() -> None:
    for queue in ("TasksQueue", "DeadLetterQueue"):
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
    assert outputs["DeadLetterQueueName"] == "taskproc-check-dead-letters"
    assert outputs["TasksTableName"] == "taskproc-check-tasks"


def test_deploy_stack_creates_updates_and_removes_the_stage_stack(cloudformation: Any) -> None:
    dev = stack.load_stage("dev")
    outputs = stack.deploy_stack(cloudformation, dev)
    assert outputs["TasksQueueName"] == "taskproc-dev-tasks"
    assert stack.deploy_stack(cloudformation, dev) == outputs
    parameters = cloudformation.describe_stacks(StackName="taskproc-dev-data")["Stacks"][0]["Parameters"]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in parameters} == dev.parameters()
    assert stack.remove_stack(cloudformation, "dev") is True
    assert stack.remove_stack(cloudformation, "dev") is False


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
    for logical_id in ("ProcessTasks", "HandleDeadLetters", "APIHandler"):
        assert "Type" not in merged["Resources"][logical_id], "Chalice defines the function; the merge adds to it"
    assert set(merged["Resources"]) - set(RESOURCES) == {"ProcessTasks", "HandleDeadLetters", "APIHandler"}
