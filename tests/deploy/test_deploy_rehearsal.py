"""`make deploy` and `make remove` rehearsed against moto's server instead of an AWS account."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra import stack
from tests.deploy.conftest import VENV, clean_env, make

STAGE = "dev"
FUNCTIONS = {
    f"taskproc-{STAGE}": "api_handler",
    f"taskproc-{STAGE}-process_tasks": "process_tasks",
    f"taskproc-{STAGE}-process_high_priority_tasks": "process_high_priority_tasks",
    f"taskproc-{STAGE}-process_low_priority_tasks": "process_low_priority_tasks",
    f"taskproc-{STAGE}-handle_dead_letters": "handle_dead_letters",
    f"taskproc-{STAGE}-tick": "tick",
}
# Each task consumer's queue and the stage variable giving its maximum concurrency.
TASK_CONSUMERS = {
    "process_tasks": ("tasks", "CONSUMER_MAX_CONCURRENCY"),
    "process_high_priority_tasks": ("tasks-high", "HIGH_PRIORITY_MAX_CONCURRENCY"),
    "process_low_priority_tasks": ("tasks-low", "LOW_PRIORITY_MAX_CONCURRENCY"),
}
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

# moto's CloudFormation skips alarms and e-mail subscriptions with a warning; the packaged
# template's tests check those (tests/deploy/test_monitoring.py).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Tried to parse AWS..(CloudWatch..Alarm|SNS..Subscription|SQS..QueuePolicy|SecretsManager..Secret"
    "|ApiGateway..(ApiKey|UsagePlan|UsagePlanKey)) but:UserWarning"
)


@pytest.fixture
def swagger_importing_moto(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto's server, able to take the API document `chalice deploy` imports.

    Test harness only, because moto's ImportRestApi falls short of API Gateway's:
    it reads info.description, which Chalice does not write (KeyError: 'description'),
    and it refuses Swagger 2.0, which is what Chalice writes. The parts moto builds
    the API from (paths, methods, responses, x-amazon-apigateway-integration) are
    the same in both versions, so the document is passed on as OpenAPI 3.
    """
    from moto.apigateway.models import APIGatewayBackend

    original = APIGatewayBackend.import_rest_api

    def import_rest_api(self: APIGatewayBackend, api_doc: dict[str, Any], fail_on_warnings: bool) -> Any:
        document = {**api_doc, "info": {"description": "", **api_doc.get("info", {})}}
        if "swagger" in document:
            del document["swagger"]
            document["openapi"] = "3.0.1"
        return original(self, document, fail_on_warnings)

    monkeypatch.setattr(APIGatewayBackend, "import_rest_api", import_rest_api)
    return moto_endpoint


@pytest.fixture
def aws_env(swagger_importing_moto: str) -> dict[str, str]:
    return clean_env(AWS_ENDPOINT_URL=swagger_importing_moto, AWS_DEFAULT_REGION="us-east-1", **FAKE_CREDENTIALS)


@pytest.fixture
def clients(aws_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    endpoint = aws_env["AWS_ENDPOINT_URL"]
    yield {
        name: session.client(name, endpoint_url=endpoint)
        for name in ("cloudformation", "lambda", "iam", "apigateway", "sqs", "dynamodb", "cloudwatch", "sns")
    }


def _ours(names: list[str]) -> list[str]:
    return sorted(name for name in names if name.startswith(f"taskproc-{STAGE}"))


def test_make_deploy_then_make_remove_creates_and_deletes_the_whole_stage(
    project: Path, aws_env: dict[str, str], clients: dict[str, Any]
) -> None:
    config = stack.load_stage(STAGE)
    lambda_, iam, sqs = clients["lambda"], clients["iam"], clients["sqs"]

    deployed = make(project, "deploy", STAGE, aws_env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "API URL: https://" in deployed.stdout

    # The data stack, from infra/resources.yaml with the stage's parameters: created, then
    # updated once the API exists, so that the operator policy names it.
    status = clients["cloudformation"].describe_stacks(StackName=stack.stack_name(STAGE))["Stacks"][0]
    assert status["StackStatus"] == "UPDATE_COMPLETE"
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in status["Parameters"]}
    assert parameters["RestApiId"], "the second deploy passes the API's id"
    tasks_url = sqs.get_queue_url(QueueName=f"taskproc-{STAGE}-tasks")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=tasks_url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == str(config.queue_visibility_timeout)
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == config.max_attempts
    assert clients["dynamodb"].describe_table(TableName=f"taskproc-{STAGE}-tasks")["Table"]["TableStatus"] == "ACTIVE"

    # One role per function, each with its own policy file.
    roles = _ours([role["RoleName"] for role in iam.list_roles()["Roles"]])
    assert roles == sorted(f"taskproc-{STAGE}-{function}" for function in FUNCTIONS.values())
    for function in FUNCTIONS.values():
        policy = json.loads((project / ".chalice" / f"policy-{STAGE}-{function}.json").read_text())
        role = f"taskproc-{STAGE}-{function}"
        (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
        assert iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"] == policy, function

    # The functions, with the stage's environment, timeouts and memory.
    stage_config = json.loads((project / ".chalice" / "config.json").read_text())["stages"][STAGE]
    functions = {f["FunctionName"]: f for f in lambda_.list_functions()["Functions"]}
    assert _ours(list(functions)) == sorted(FUNCTIONS)
    for name, function in FUNCTIONS.items():
        settings = stage_config["lambda_functions"][function]
        assert functions[name]["Environment"]["Variables"] == config.environment, name
        assert functions[name]["Timeout"] == settings["lambda_timeout"], name
        assert functions[name]["MemorySize"] == settings["lambda_memory_size"], name

    # Every event source mapping, on the right queues; chalice deploy cannot ask for item failures.
    mappings = {
        m["FunctionArn"].rsplit(":", 1)[-1]: m for m in lambda_.list_event_source_mappings()["EventSourceMappings"]
    }
    assert set(mappings) == set(FUNCTIONS) - {f"taskproc-{STAGE}", f"taskproc-{STAGE}-tick"}
    dead_letters = mappings[f"taskproc-{STAGE}-handle_dead_letters"]
    assert dead_letters["EventSourceArn"].endswith(f":taskproc-{STAGE}-dead-letters")
    assert dead_letters["BatchSize"] == 10 and not dead_letters.get("FunctionResponseTypes")
    for function, (queue, setting) in TASK_CONSUMERS.items():
        tasks = mappings[f"taskproc-{STAGE}-{function}"]
        assert tasks["EventSourceArn"].endswith(f":taskproc-{STAGE}-{queue}"), function
        assert tasks["BatchSize"] == 10, function
        assert tasks["ScalingConfig"] == {"MaximumConcurrency": int(config.environment[setting])}, function
        assert not tasks.get("FunctionResponseTypes"), function
    assert config.environment["REPORT_BATCH_ITEM_FAILURES"] == "false"

    assert [api["name"] for api in clients["apigateway"].get_rest_apis()["items"]] == ["taskproc"]

    # The stage's dashboard and alarm topic come with the data stack (moto builds no alarms).
    assert clients["cloudwatch"].get_dashboard(DashboardName=f"taskproc-{STAGE}")["DashboardBody"]
    topics = [t["TopicArn"] for t in clients["sns"].list_topics()["Topics"]]
    assert [t for t in topics if t.endswith(f":taskproc-{STAGE}-alarms")]
    _the_operator_policy_follows_the_deployed_api(project, aws_env, clients)

    removed = make(project, "remove", STAGE, aws_env)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert _ours([f["FunctionName"] for f in lambda_.list_functions()["Functions"]]) == []
    assert lambda_.list_event_source_mappings()["EventSourceMappings"] == []
    assert _ours([role["RoleName"] for role in iam.list_roles()["Roles"]]) == []
    assert clients["apigateway"].get_rest_apis()["items"] == []
    assert _ours([url.rsplit("/", 1)[-1] for url in sqs.list_queues().get("QueueUrls", [])]) == []
    assert _ours(clients["dynamodb"].list_tables()["TableNames"]) == []


def _the_operator_policy_follows_the_deployed_api(
    project: Path, aws_env: dict[str, str], clients: dict[str, Any]
) -> None:
    """The data stack comes before `chalice deploy` makes the API; deploying it again scopes the policy to it."""
    iam = clients["iam"]

    def operator_policies() -> list[dict[str, Any]]:
        policies = iam.list_policies(Scope="Local")["Policies"]
        return [p for p in policies if p["PolicyName"] == f"taskproc-{STAGE}-operator"]

    again = subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "infra.stack", "deploy", STAGE],
        cwd=project,
        env=aws_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    (api,) = clients["apigateway"].get_rest_apis()["items"]
    (policy,) = operator_policies()
    document = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
    resources = document["PolicyVersion"]["Document"]["Statement"][0]["Resource"]
    assert resources and all(f":{api['id']}/api/" in resource for resource in resources)


def test_make_deploy_names_what_is_missing_without_credentials_or_region(project: Path) -> None:
    result = make(project, "deploy", STAGE, clean_env())
    assert result.returncode != 0
    assert "missing a region" in result.stderr and "credentials" in result.stderr


def test_make_remove_names_what_is_missing_without_credentials(project: Path) -> None:
    result = make(project, "remove", STAGE, clean_env(AWS_DEFAULT_REGION="us-east-1"))
    assert result.returncode != 0
    assert "missing credentials" in result.stderr and "a region" not in result.stderr


def test_make_deploy_refuses_a_stage_whose_consumers_report_item_failures(project: Path) -> None:
    result = make(project, "deploy", "prod", clean_env(AWS_DEFAULT_REGION="us-east-1", **FAKE_CREDENTIALS))
    assert result.returncode != 0
    assert "REPORT_BATCH_ITEM_FAILURES=true" in result.stderr and "make package STAGE=prod" in result.stderr
