"""The embedded AWS endpoint (moto's server) and the resources of infra/resources.yaml on it."""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from local.atomic_dynamodb import make_writes_atomic
from local.aws_limits import install as enforce_aws_limits
from local.config import EMBEDDED_CREDENTIALS, LOOPBACK, TEMPLATE, LocalConfig
from local.embedded_sqs import EmbeddedSqsError
from local.embedded_sqs import install as install_embedded_sqs
from local.no_cors import disable_cors

logger = logging.getLogger(__name__)

# CloudFormation statuses after which a stack may be updated, and those that mean it failed.
STABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"}
FAILED = {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_FAILED", "DELETE_COMPLETE"}
# Few retries: the endpoint is on this machine, and a slow answer means it is not up yet.
CLIENT_CONFIG = BotoConfig(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2, read_timeout=30)


class EndpointError(Exception):
    """The embedded endpoint could not start, or the resources could not be created on it."""


class EmbeddedAws:
    """moto's server on the loopback address, in a thread of this process; everything is in memory."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Start serving.

        Raises:
            EndpointError: the port is taken, or the installed moto is not the one local/embedded_sqs.py patches.
        """
        # moto's server thread would die quietly on a taken port; check first.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex((LOOPBACK, self.port)) == 0:
                raise EndpointError(f"port {self.port} is already in use; set AWS_PORT to a free one")
        from moto.server import ThreadedMotoServer  # imported here: only this piece needs moto

        try:
            install_embedded_sqs()
        except EmbeddedSqsError as exc:
            raise EndpointError(str(exc)) from exc
        make_writes_atomic()
        enforce_aws_limits()
        disable_cors()

        # werkzeug logs every request at INFO: thousands of lines a minute under load.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port, verbose=False)
        try:
            self._server.start()
        except OSError as exc:
            raise EndpointError(f"cannot listen on {self.url}: {exc}") from exc

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@dataclass(frozen=True)
class Resources:
    """The stack's outputs: what the app is wired to."""

    tasks_queue: str
    dead_letter_queue: str
    table: str
    flow_table: str
    schedules_table: str
    max_receive_count: int
    high_priority_queue: str = ""
    low_priority_queue: str = ""

    @property
    def task_queues(self) -> tuple[str, ...]:
        """Every priority class's queue, the default class's first."""
        return (self.tasks_queue, self.high_priority_queue, self.low_priority_queue)

    @classmethod
    def from_outputs(cls, outputs: dict[str, str], max_attempts: int) -> Resources:
        return cls(
            tasks_queue=outputs["TasksQueueName"],
            high_priority_queue=outputs["HighPriorityTasksQueueName"],
            low_priority_queue=outputs["LowPriorityTasksQueueName"],
            dead_letter_queue=outputs["DeadLetterQueueName"],
            table=outputs["TasksTableName"],
            flow_table=outputs["FlowTableName"],
            schedules_table=outputs["SchedulesTableName"],
            max_receive_count=max_attempts,
        )


def client(service: str, config: LocalConfig, boto_config: BotoConfig = CLIENT_CONFIG) -> Any:
    """A boto3 client of the configured endpoint, with the embedded endpoint's dummy credentials if it is that one."""
    credentials: dict[str, str] = {}
    if config.embedded_endpoint:
        credentials = {
            "aws_access_key_id": EMBEDDED_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": EMBEDDED_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": EMBEDDED_CREDENTIALS["AWS_SESSION_TOKEN"],
        }
    session = boto3.session.Session(region_name=config.region, **credentials)
    return session.client(service, endpoint_url=config.endpoint_url, config=boto_config)


def stack_parameters(config: LocalConfig) -> list[dict[str, str]]:
    """The template's parameters for this stage: the same names, redrive and visibility as on AWS."""
    values = {
        "Stage": config.stage,
        "MaxAttempts": str(config.max_attempts),
        "QueueVisibilityTimeout": str(config.queue_visibility_timeout),
    }
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]


def provision(config: LocalConfig, timeout_seconds: float = 60) -> Resources:
    """Create the stack of infra/resources.yaml, or bring an existing one up to these parameters.

    Raises:
        EndpointError: CloudFormation refused the template or the stack did not settle in time.
    """
    cfn = client("cloudformation", config)
    body = TEMPLATE.read_text(encoding="utf-8")
    kwargs = {"StackName": config.stack_name, "TemplateBody": body, "Parameters": stack_parameters(config)}
    try:
        existing = _describe(cfn, config.stack_name)
        if existing is None:
            cfn.create_stack(**kwargs)
            logger.info("creating stack %s", config.stack_name)
        elif existing["StackStatus"] in FAILED:
            raise EndpointError(f"stack {config.stack_name} is {existing['StackStatus']}; delete it first")
        else:
            _update(cfn, kwargs)
        stack = _wait_until_stable(cfn, config.stack_name, time.monotonic() + timeout_seconds)
    except (ClientError, BotoCoreError) as exc:
        raise EndpointError(f"cannot provision {config.stack_name} at {config.endpoint_url}: {exc}") from exc
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    resources = Resources.from_outputs(outputs, config.max_attempts)
    _check_names(config, resources)
    _check_queue(config, resources)
    return resources


def _check_names(config: LocalConfig, resources: Resources) -> None:
    """Fail when the stage's resource names are not the stack's.

    Raises:
        EndpointError: .chalice/config.json and infra/resources.yaml name the resources differently.
    """
    env = config.app_environment
    pairs = [
        ("TASKS_QUEUE", resources.tasks_queue),
        ("HIGH_PRIORITY_QUEUE", resources.high_priority_queue),
        ("LOW_PRIORITY_QUEUE", resources.low_priority_queue),
        ("DEAD_LETTER_QUEUE", resources.dead_letter_queue),
        ("TASKS_TABLE", resources.table),
        ("FLOW_TABLE", resources.flow_table),
        ("SCHEDULES_TABLE", resources.schedules_table),
    ]
    wrong = [f"{name}={env.get(name)!r} but the stack made {made!r}" for name, made in pairs if env.get(name) != made]
    if wrong:
        raise EndpointError(f"stage {config.stage}: {'; '.join(wrong)}")


def _check_queue(config: LocalConfig, resources: Resources) -> None:
    """Fail when the queue does not match the parameters.

    moto's CloudFormation applies a queue's properties on create but not on
    update, so a stack left on a long-lived endpoint by an earlier run with
    other parameters keeps its old redrive policy and visibility timeout.

    Raises:
        EndpointError: the queue's redrive or visibility timeout differ from the parameters.
    """
    sqs = client("sqs", config)
    for queue in resources.task_queues:
        try:
            url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        except (ClientError, BotoCoreError) as exc:
            raise EndpointError(f"queue {queue} not readable after provisioning: {exc}") from exc
        redrive = json.loads(attributes.get("RedrivePolicy", "{}"))
        found = (int(redrive.get("maxReceiveCount", 0)), int(attributes.get("VisibilityTimeout", 0)))
        wanted = (config.max_attempts, config.queue_visibility_timeout)
        if found != wanted:
            raise EndpointError(
                f"queue {queue} has maxReceiveCount {found[0]} and visibility timeout {found[1]} s, not"
                f" {wanted[0]} and {wanted[1]} s: restart the endpoint (it keeps everything in memory) to recreate it"
            )


def _describe(cfn: Any, name: str) -> dict[str, Any] | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return stacks[0] if stacks else None


def _update(cfn: Any, kwargs: dict[str, Any]) -> None:
    try:
        cfn.update_stack(**kwargs)
        logger.info("updating stack %s", kwargs["StackName"])
    except ClientError as exc:
        # CloudFormation's way of saying the stack already matches: the idempotent case.
        if "No updates are to be performed" not in str(exc):
            raise


def _wait_until_stable(cfn: Any, name: str, deadline: float) -> dict[str, Any]:
    while True:
        stack = _describe(cfn, name)
        status = stack["StackStatus"] if stack else "MISSING"
        if stack is not None and status in STABLE:
            return stack
        if status in FAILED or status == "MISSING":
            raise EndpointError(f"stack {name} ended {status}: {stack.get('StackStatusReason') if stack else ''}")
        if time.monotonic() > deadline:
            raise EndpointError(f"stack {name} still {status} after the deadline")
        time.sleep(0.2)
