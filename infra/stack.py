"""A stage's data resources as a CloudFormation stack, and the template `chalice package` merges.

    python -m infra.stack check STAGE              the stage exists; credentials and region, or what is missing
    python -m infra.stack deploy STAGE             create or update the stack taskproc-STAGE-data
    python -m infra.stack remove STAGE             delete that stack
    python -m infra.stack merge-template STAGE OUT the stage's --merge-template for `chalice package`

Every value comes from `.chalice/config.json`, so the stack and the functions
agree on names, attempts and timeouts.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".chalice" / "config.json"
TEMPLATE = ROOT / "infra" / "resources.yaml"

# AWS's guidance for SQS event sources: visibility timeout >= 6 x the function's timeout.
VISIBILITY_PER_TIMEOUT = 6
CHALICE_DEFAULT_TIMEOUT = 60

# Consumer function -> (its logical id in the packaged template, the queue resource it polls).
CONSUMERS = {
    "process_tasks": ("ProcessTasks", "TasksQueue"),
    "handle_dead_letters": ("HandleDeadLetters", "DeadLetterQueue"),
}
API_HANDLER = "APIHandler"


class StackError(Exception):
    """The stage cannot be deployed, packaged or removed as asked; the message says why."""


@dataclass(frozen=True)
class StageConfig:
    """What `.chalice/config.json` says about one stage, resolved the way Chalice resolves it."""

    name: str
    environment: dict[str, str]
    timeouts: dict[str, int]

    @property
    def max_attempts(self) -> int:
        return int(self.environment.get("MAX_ATTEMPTS", "3"))

    @property
    def reports_batch_item_failures(self) -> bool:
        return self.environment.get("REPORT_BATCH_ITEM_FAILURES", "false").strip().lower() in {"true", "1", "yes"}

    @property
    def queue_visibility_timeout(self) -> int:
        """Six times the longest consumer timeout: both queues feed a Lambda function."""
        return VISIBILITY_PER_TIMEOUT * max(self.timeouts[name] for name in CONSUMERS)

    def parameters(self) -> dict[str, str]:
        """The data stack's parameters for this stage."""
        return {
            "Stage": self.name,
            "MaxAttempts": str(self.max_attempts),
            "QueueVisibilityTimeout": str(self.queue_visibility_timeout),
        }


def load_stage(stage: str, config_path: Path = CONFIG) -> StageConfig:
    """The stage's environment and consumer timeouts.

    Raises:
        StackError: the stage is not in the config, or its lease outlasts the visibility timeout.
    """
    config = json.loads(config_path.read_text())
    stages = config.get("stages", {})
    if stage not in stages:
        raise StackError(f"stage {stage!r} is not in {config_path.name}; known stages: {', '.join(sorted(stages))}")
    stage_config = stages[stage]
    environment = {**config.get("environment_variables", {}), **stage_config.get("environment_variables", {})}

    def timeout(function: str) -> int:
        # Chalice's precedence: stage function, stage, top-level function, top level.
        for scope in (
            stage_config.get("lambda_functions", {}).get(function, {}),
            stage_config,
            config.get("lambda_functions", {}).get(function, {}),
            config,
        ):
            if "lambda_timeout" in scope:
                return int(scope["lambda_timeout"])
        return CHALICE_DEFAULT_TIMEOUT

    resolved = StageConfig(stage, environment, {name: timeout(name) for name in CONSUMERS})
    lease = float(environment.get("LEASE_SECONDS", "120"))
    if lease >= resolved.queue_visibility_timeout:
        raise StackError(
            f"stage {stage!r}: LEASE_SECONDS ({lease:g}) must be below the queue visibility timeout"
            f" ({resolved.queue_visibility_timeout}), or a message returns while its task is still leased"
        )
    return resolved


def stack_name(stage: str) -> str:
    return f"taskproc-{stage}-data"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def merge_template(stage: StageConfig, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data resources, pinned to the stage, plus what the packaged event sources need.

    `chalice package --merge-template` deep-merges this into its SAM template by
    logical id. The parameters are pinned to the stage because the functions'
    environment names the stage's resources. Each consumer waits for its queue,
    and its event source reports item failures when the stage's consumers
    return them (REPORT_BATCH_ITEM_FAILURES).
    """
    merged = json.loads(json.dumps(template or load_template()))
    for name, value in stage.parameters().items():
        merged["Parameters"][name]["Default"] = value
        merged["Parameters"][name]["AllowedValues"] = [value]
    resources = merged["Resources"]
    for function, (logical_id, queue) in CONSUMERS.items():
        if logical_id in resources:
            raise StackError(f"the data template already defines {logical_id}, the {function} function's id")
        # The merge cannot replace Chalice's queue ARN (dicts merge key by key), so the
        # function depends on its queue instead, and its event source on the function.
        consumer: dict[str, Any] = {"DependsOn": [queue, "TasksTable"]}
        if stage.reports_batch_item_failures:
            event = f"{logical_id}SqsEventSource"
            properties = {"FunctionResponseTypes": ["ReportBatchItemFailures"]}
            consumer["Properties"] = {"Events": {event: {"Properties": properties}}}
        resources[logical_id] = consumer
    resources[API_HANDLER] = {"DependsOn": ["TasksQueue", "TasksTable"]}
    return merged


def check_aws(session: boto3.session.Session) -> None:
    """Raises StackError naming what is missing: a region, credentials, or both."""
    missing = []
    if not session.region_name:
        missing.append("a region (set AWS_REGION or AWS_DEFAULT_REGION, or `region` in your AWS profile)")
    if session.get_credentials() is None:
        missing.append(
            "credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure`)"
        )
    if missing:
        raise StackError("cannot reach AWS: missing " + " and ".join(missing))


def require_deployable(stage: StageConfig) -> None:
    """Raises StackError when `chalice deploy` would wire the stage's consumers wrongly."""
    if stage.reports_batch_item_failures:
        raise StackError(
            f"stage {stage.name!r} sets REPORT_BATCH_ITEM_FAILURES=true: its consumers return failed items,"
            " which only an event source with FunctionResponseTypes=ReportBatchItemFailures honours, and"
            f" `chalice deploy` cannot set that. Use `make package STAGE={stage.name}` and deploy the template,"
            " or set REPORT_BATCH_ITEM_FAILURES to false for this stage."
        )


def _status(cloudformation: Any, name: str) -> str | None:
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def deploy_stack(cloudformation: Any, stage: StageConfig, template_path: Path = TEMPLATE) -> dict[str, str]:
    """Create or update the stage's data stack, wait for it, and return its outputs.

    Raises:
        StackError: the stack is in a state it cannot be updated from, or the change failed.
    """
    name = stack_name(stage.name)
    arguments = {
        "StackName": name,
        "TemplateBody": template_path.read_text(),
        "Parameters": [{"ParameterKey": key, "ParameterValue": value} for key, value in stage.parameters().items()],
        "Tags": [{"Key": "app", "Value": "taskproc"}, {"Key": "stage", "Value": stage.name}],
    }
    status = _status(cloudformation, name)
    try:
        if status is None:
            cloudformation.create_stack(**arguments)
            cloudformation.get_waiter("stack_create_complete").wait(StackName=name)
        elif status == "ROLLBACK_COMPLETE":
            raise StackError(f"stack {name} failed to create earlier; run `make remove STAGE={stage.name}` first")
        else:
            try:
                cloudformation.update_stack(**arguments)
            except ClientError as exc:
                if "No updates are to be performed" not in str(exc):
                    raise
            else:
                cloudformation.get_waiter("stack_update_complete").wait(StackName=name)
    except (ClientError, BotoCoreError) as exc:
        raise StackError(f"stack {name}: {exc}") from exc
    return outputs(cloudformation, name)


def outputs(cloudformation: Any, name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def remove_stack(cloudformation: Any, stage: str) -> bool:
    """Delete the stage's data stack and wait; False if there was none.

    Raises:
        StackError: the deletion failed.
    """
    name = stack_name(stage)
    try:
        if _status(cloudformation, name) is None:
            return False
        cloudformation.delete_stack(StackName=name)
        cloudformation.get_waiter("stack_delete_complete").wait(StackName=name)
    except (ClientError, BotoCoreError) as exc:
        raise StackError(f"stack {name}: {exc}") from exc
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("check", "deploy", "remove"):
        commands.add_parser(command).add_argument("stage")
    merge = commands.add_parser("merge-template")
    merge.add_argument("stage")
    merge.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        stage = load_stage(args.stage)
        if args.command == "merge-template":
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(merge_template(stage), indent=2) + "\n")
            return 0
        session = boto3.session.Session()
        check_aws(session)
        cloudformation = session.client("cloudformation")
        if args.command == "check":
            print(f"AWS region {session.region_name}; credentials found")
        elif args.command == "deploy":
            require_deployable(stage)
            for key, value in deploy_stack(cloudformation, stage).items():
                print(f"{key}: {value}")
        elif remove_stack(cloudformation, args.stage):
            print(f"deleted stack {stack_name(args.stage)}")
        else:
            print(f"no stack {stack_name(args.stage)} to delete")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
