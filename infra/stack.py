"""A stage's data and monitoring resources as a CloudFormation stack, and the template `chalice package` merges.

    python -m infra.stack check STAGE              the stage exists; credentials and region, or what is missing
    python -m infra.stack deploy STAGE [--parameter NAME=VALUE ...]
                                                   create or update the stack taskproc-STAGE-data
    python -m infra.stack remove STAGE             delete that stack
    python -m infra.stack merge-template STAGE OUT the stage's --merge-template for `chalice package`

The stack and the merge template hold infra/resources.yaml (queues, table, index),
infra/monitoring.yaml (operator policy, alarms, topic, dashboard) and
infra/access.yaml (TLS-only queue policies, the cursor secret, the API key and
its usage plan); the merge template adds infra/packaged.yaml (the API's access
log, stage throttling, checkov's skips on Chalice's resources). The offline
stack uses resources.yaml alone. Every stage value comes from
`.chalice/config.json`, so the stack and the functions agree on names,
attempts and timeouts; `--parameter` sets the others (alarm thresholds, the
alarm e-mail), and an update keeps the values given before.
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
MONITORING = ROOT / "infra" / "monitoring.yaml"
ACCESS = ROOT / "infra" / "access.yaml"
PACKAGED = ROOT / "infra" / "packaged.yaml"
# The data stack's pieces, merged in this order; the packaged template adds PACKAGED.
STACK_PIECES = (TEMPLATE, MONITORING, ACCESS)
DEPLOYED = ROOT / ".chalice" / "deployed"

# AWS's guidance for SQS event sources: visibility timeout >= 6 x the function's timeout.
VISIBILITY_PER_TIMEOUT = 6
CHALICE_DEFAULT_TIMEOUT = 60
DEFAULT_LOG_RETENTION_DAYS = 30

# Consumer function -> (its logical id in the packaged template, the queue resource it polls).
CONSUMERS = {
    "process_tasks": ("ProcessTasks", "TasksQueue"),
    "process_high_priority_tasks": ("ProcessHighPriorityTasks", "HighPriorityTasksQueue"),
    "process_low_priority_tasks": ("ProcessLowPriorityTasks", "LowPriorityTasksQueue"),
    "handle_dead_letters": ("HandleDeadLetters", "DeadLetterQueue"),
}
# The consumers that run tasks, one per priority class: each runs the same task types, so each
# has the timeout CONSUMER_TIMEOUT_SECONDS states.
TASK_CONSUMERS = ("process_tasks", "process_high_priority_tasks", "process_low_priority_tasks")
API_HANDLER = "APIHandler"
# Scheduled function -> its logical id in the packaged template (the ticker: chalicelib/tick/ticker.py).
SCHEDULED = {"tick": "Tick"}
# Function logical id -> the log group Chalice generates for it (log_retention_in_days).
LOG_GROUPS = {
    API_HANDLER: "ApiHandlerLogGroup",
    "ProcessTasks": "ProcessTasksLogGroup",
    "ProcessHighPriorityTasks": "ProcessHighPriorityTasksLogGroup",
    "ProcessLowPriorityTasks": "ProcessLowPriorityTasksLogGroup",
    "HandleDeadLetters": "HandleDeadLettersLogGroup",
    "Tick": "TickLogGroup",
}
# The API sends to every class's queue.
TASK_QUEUES = ["TasksQueue", "HighPriorityTasksQueue", "LowPriorityTasksQueue"]
# The packaged template's REST API (chalice package names it so) and the monitoring
# template's parameter that stands for it where the API is deployed separately.
REST_API = "RestAPI"
REST_API_PARAMETER = "RestApiId"


class StackError(Exception):
    """The stage cannot be deployed, packaged or removed as asked; the message says why."""


@dataclass(frozen=True)
class StageConfig:
    """What `.chalice/config.json` says about one stage, resolved the way Chalice resolves it."""

    name: str
    environment: dict[str, str]
    timeouts: dict[str, int]
    api_gateway_stage: str = "api"
    # Chalice's `xray`: active tracing on the functions and, in the packaged template, the API.
    xray: bool = False
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS
    # The stage's `api_throttle`: requests per second and burst, for the usage plan and the API stage.
    api_rate_limit: int = 20
    api_burst_limit: int = 40
    # The stage's `retain_table`: deletion protection and Retain on the table.
    retain_table: bool = False

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
        """The data resources' parameters for this stage (infra/resources.yaml, as the offline stack passes them)."""
        return {
            "Stage": self.name,
            "MaxAttempts": str(self.max_attempts),
            "QueueVisibilityTimeout": str(self.queue_visibility_timeout),
        }

    def pinned_parameters(self) -> dict[str, str]:
        """Every parameter that follows from the stage's configuration, monitoring's included."""
        return {
            **self.parameters(),
            "ApiStage": self.api_gateway_stage,
            "ConsumersReportItemFailures": str(self.reports_batch_item_failures).lower(),
            "ApiRateLimit": str(self.api_rate_limit),
            "ApiBurstLimit": str(self.api_burst_limit),
            "LogRetentionDays": str(self.log_retention_days),
        }

    def function_names(self) -> dict[str, str]:
        """Function logical id -> the name `chalice deploy` gives it, which alarms and the dashboard use."""
        names = {API_HANDLER: f"taskproc-{self.name}"}
        for function, (logical_id, _) in CONSUMERS.items():
            names[logical_id] = f"taskproc-{self.name}-{function}"
        for function, logical_id in SCHEDULED.items():
            names[logical_id] = f"taskproc-{self.name}-{function}"
        return names


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

    def setting(name: str, default: Any) -> Any:
        return stage_config.get(name, config.get(name, default))

    throttle = setting("api_throttle", {})
    resolved = StageConfig(
        stage,
        environment,
        {name: timeout(name) for name in CONSUMERS},
        api_gateway_stage=str(setting("api_gateway_stage", "api")),
        xray=bool(setting("xray", False)),
        log_retention_days=int(setting("log_retention_in_days", DEFAULT_LOG_RETENTION_DAYS)),
        api_rate_limit=int(throttle.get("rate_limit", StageConfig.api_rate_limit)),
        api_burst_limit=int(throttle.get("burst_limit", StageConfig.api_burst_limit)),
        retain_table=bool(setting("retain_table", False)),
    )
    lease = float(environment.get("LEASE_SECONDS", "120"))
    if lease >= resolved.queue_visibility_timeout:
        raise StackError(
            f"stage {stage!r}: LEASE_SECONDS ({lease:g}) must be below the queue visibility timeout"
            f" ({resolved.queue_visibility_timeout}), or a message returns while its task is still leased"
        )
    check_task_types(resolved)
    return resolved


def check_task_types(stage: StageConfig) -> None:
    """Check every task type against the stage's settings and its consumer function's timeout, as the runtime will.

    Raises:
        StackError: CONSUMER_TIMEOUT_SECONDS is not the function's timeout, or a type does not fit
            (the message names the type and the rule).
    """
    from chalicelib.consume.deadline import invocation_seconds
    from chalicelib.handlers import REGISTRY
    from chalicelib.registry import RegistrationError
    from chalicelib.settings import Settings

    function_timeout = stage.timeouts["process_tasks"]
    declared = stage.environment.get("CONSUMER_TIMEOUT_SECONDS")
    if declared is None or int(declared) != function_timeout:
        raise StackError(
            f"stage {stage.name!r}: CONSUMER_TIMEOUT_SECONDS ({declared}) must be process_tasks' lambda_timeout"
            f" ({function_timeout}), which the runtime checks task types against"
        )
    for consumer in TASK_CONSUMERS:
        if stage.timeouts[consumer] != function_timeout:
            raise StackError(
                f"stage {stage.name!r}: {consumer}'s lambda_timeout ({stage.timeouts[consumer]}) must be"
                f" process_tasks' ({function_timeout}): every priority class runs the same task types"
            )
    # The stage's values alone, whatever this process's environment holds.
    defaults = {name: field.default for name, field in Settings.model_fields.items() if not field.is_required()}
    given = {name: value for name, value in stage.environment.items() if name in Settings.model_fields}
    try:
        settings = Settings(**{**defaults, **given})
        REGISTRY.check(settings.MAX_ATTEMPTS, settings.LEASE_SECONDS, invocation_seconds(settings, function_timeout))
    except (ValueError, RegistrationError) as exc:
        raise StackError(f"stage {stage.name!r}: {exc}") from exc


def stack_name(stage: str) -> str:
    return f"taskproc-{stage}-data"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def aws_template(pieces: tuple[Path, ...] = STACK_PIECES) -> dict[str, Any]:
    """The infra/ files as one template: what a stage gets on AWS.

    Raises:
        StackError: two define one logical id differently.
    """
    loaded = [(path, load_template(path)) for path in pieces]
    combined: dict[str, Any] = {"AWSTemplateFormatVersion": loaded[0][1]["AWSTemplateFormatVersion"]}
    combined["Description"] = (
        "taskproc: data resources, operator policy, alarms, dashboard and access controls of one stage."
    )
    for section in ("Parameters", "Conditions", "Resources", "Outputs"):
        merged: dict[str, Any] = {}
        origin: dict[str, Path] = {}
        for path, template in loaded:
            for key, value in template.get(section, {}).items():
                if key in merged and merged[key] != value:
                    where = f"{origin[key].name} and {path.name}"
                    raise StackError(f"{section} {key} defined differently in {where}")
                merged[key], origin[key] = value, path
        if merged:
            combined[section] = merged
    return combined


def protect_table(template: dict[str, Any], stage: StageConfig) -> dict[str, Any]:
    """The template, its table kept by every stack operation where the stage retains it."""
    if stage.retain_table:
        table = template["Resources"]["TasksTable"]
        table["DeletionPolicy"] = table["UpdateReplacePolicy"] = "Retain"
        table["Properties"]["DeletionProtectionEnabled"] = True
    return template


def table_kept_note(stage: StageConfig) -> str:
    """What `make remove` says where the stage's table outlives its stack."""
    table = stage.environment["TASKS_TABLE"]
    return (
        f"the table {table} stays: it has deletion protection and DeletionPolicy Retain, so removing the"
        f" stack keeps every task. To delete it deliberately: aws dynamodb update-table --table-name {table}"
        f" --no-deletion-protection-enabled && aws dynamodb delete-table --table-name {table}"
    )


def _replace_ref(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        if node == {"Ref": old}:
            return {"Ref": new}
        return {key: _replace_ref(value, old, new) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace_ref(value, old, new) for value in node]
    return node


def merge_template(stage: StageConfig, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data and monitoring resources, pinned to the stage, plus what the packaged functions need.

    `chalice package --merge-template` deep-merges this into its SAM template by
    logical id. The stage's parameters are pinned because the functions'
    environment names the stage's resources. Each consumer waits for its queue,
    and its event source reports item failures when the stage's consumers
    return them (REPORT_BATCH_ITEM_FAILURES). The functions get the names
    `chalice deploy` gives them, which the alarms and dashboard name. The
    operator policy refers to the template's own API instead of a parameter.

    Raises:
        StackError: the data template defines a logical id Chalice uses for a function.
    """
    merged = protect_table(json.loads(json.dumps(template or aws_template((*STACK_PIECES, PACKAGED)))), stage)
    for name, value in stage.pinned_parameters().items():
        merged["Parameters"][name]["Default"] = value
        merged["Parameters"][name]["AllowedValues"] = [value]
    resources = merged["Resources"]
    functions = stage.function_names()
    for logical_id in functions:
        if "Type" in resources.get(logical_id, {}):
            raise StackError(f"the data template already defines {logical_id}, a function's id")
    for _, (logical_id, queue) in CONSUMERS.items():
        # The merge cannot replace Chalice's queue ARN (dicts merge key by key), so the
        # function depends on its queue instead, and its event source on the function.
        consumer: dict[str, Any] = {**resources.get(logical_id, {}), "DependsOn": [queue, "TasksTable"]}
        consumer["Properties"] = {"FunctionName": functions[logical_id]}
        if stage.reports_batch_item_failures:
            event = f"{logical_id}SqsEventSource"
            properties = {"FunctionResponseTypes": ["ReportBatchItemFailures"]}
            consumer["Properties"]["Events"] = {event: {"Properties": properties}}
        resources[logical_id] = consumer
    for logical_id in SCHEDULED.values():
        resources[logical_id] = {
            **resources.get(logical_id, {}),
            "DependsOn": [*TASK_QUEUES, "TasksTable", "SchedulesTable"],
            "Properties": {"FunctionName": functions[logical_id]},
        }
    resources[API_HANDLER] = {
        **resources.get(API_HANDLER, {}),
        "DependsOn": [*TASK_QUEUES, "TasksTable"],
        "Properties": {"FunctionName": functions[API_HANDLER]},
    }
    for logical_id, log_group in LOG_GROUPS.items():
        # Named outright rather than after the function (Chalice's Fn::Sub names the API's by
        # an id it renames), so each function can wait for its group: the runtime never
        # creates one with no retention before the stack does.
        group = resources.setdefault(log_group, {})
        group.setdefault("Properties", {})["LogGroupName"] = f"/aws/lambda/{functions[logical_id]}"
        resources[logical_id]["DependsOn"].append(log_group)
    resources[REST_API]["Properties"]["TracingEnabled"] = stage.xray
    _bind_to_the_api(merged)
    return merged


def _bind_to_the_api(template: dict[str, Any]) -> None:
    """In the packaged template the API is a resource beside the operator policy and the usage plan:
    refer to it, unconditionally, and to its stage through SAM's `RestAPI.Stage`, so the plan waits for it.
    """
    del template["Parameters"][REST_API_PARAMETER]
    del template["Conditions"]["HasRestApiId"]
    for section in ("Resources", "Outputs"):
        for logical_id, entry in list(template[section].items()):
            if entry.get("Condition") == "HasRestApiId":
                del entry["Condition"]
                template[section][logical_id] = _replace_ref(entry, REST_API_PARAMETER, REST_API)
    template["Resources"]["UsagePlan"]["Properties"]["ApiStages"][0]["Stage"] = {"Ref": f"{REST_API}.Stage"}
    leftover = json.dumps(template)
    if f'"Ref": "{REST_API_PARAMETER}"' in leftover or "HasRestApiId" in leftover:
        raise StackError(f"{REST_API_PARAMETER} is used outside the resources that exist once the API does")


def deployed_rest_api_id(stage: str, deployed_dir: Path = DEPLOYED) -> str:
    """The stage's REST API id from `chalice deploy`'s record, or '' before the first deploy (or after a delete)."""
    path = deployed_dir / f"{stage}.json"
    if not path.exists():
        return ""
    record = json.loads(path.read_text())
    for resource in record.get("resources", []):
        if resource.get("resource_type") == "rest_api":
            return str(resource.get("rest_api_id", ""))
    return ""


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


def read_api_key_command(api_key_id: str) -> str:
    """The command that prints the API key's value (the stack knows its id, never the value)."""
    return f"aws apigateway get-api-key --api-key {api_key_id} --include-value --query value --output text"


def deploy_report(stage: StageConfig, stack_outputs: dict[str, str]) -> list[str]:
    """What `make deploy` prints after the data stack: its outputs, and where to read the API key."""
    lines = [f"{key}: {value}" for key, value in stack_outputs.items()]
    if "ApiKeyId" in stack_outputs:
        lines.append(f"API key: {read_api_key_command(stack_outputs['ApiKeyId'])}")
    else:
        lines.append(
            f"note: no API deployed for stage {stage.name} yet, so no operator policy, usage plan or API key;"
            " deploying the stack again after `chalice deploy` adds them, scoped to that API"
        )
    return lines


def _describe(cloudformation: Any, name: str) -> dict[str, Any] | None:
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return dict(stacks[0]) if stacks else None


def _status(cloudformation: Any, name: str) -> str | None:
    described = _describe(cloudformation, name)
    return str(described["StackStatus"]) if described else None


def stack_parameters(
    stage: StageConfig,
    template: dict[str, Any],
    rest_api_id: str = "",
    overrides: dict[str, str] | None = None,
    previous: dict[str, str] | None = None,
) -> list[dict[str, str]]:
    """The stack's parameters: the stage's pinned values, the API id, the overrides, and earlier values kept.

    `previous` holds the existing stack's values; those not pinned or overridden
    are passed again (an alarm e-mail set once survives the next `make deploy`).
    They are passed as values rather than UsePreviousValue, which moto's
    CloudFormation only honours for parameters given explicitly at creation.

    Raises:
        StackError: an override names an unknown parameter or one the stage's configuration decides.
    """
    pinned = {**stage.pinned_parameters(), REST_API_PARAMETER: rest_api_id}
    overrides = overrides or {}
    known = set(template["Parameters"])
    for name in overrides:
        if name not in known:
            raise StackError(f"no parameter {name!r}; the template's are {', '.join(sorted(known))}")
        if name in pinned:
            raise StackError(f"parameter {name!r} comes from .chalice/config.json or chalice deploy, not --parameter")
    kept = {name: value for name, value in (previous or {}).items() if name in known}
    values = {**kept, **pinned, **overrides}
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]


def deploy_stack(
    cloudformation: Any,
    stage: StageConfig,
    rest_api_id: str = "",
    overrides: dict[str, str] | None = None,
) -> dict[str, str]:
    """Create or update the stage's data stack, wait for it, and return its outputs.

    `rest_api_id` scopes the operator policy; the policy is left out while it is ''.

    Raises:
        StackError: the stack is in a state it cannot be updated from, a parameter
            cannot be set, or the change failed.
    """
    name = stack_name(stage.name)
    template = protect_table(aws_template(), stage)
    try:
        described = _describe(cloudformation, name)
    except (ClientError, BotoCoreError) as exc:
        raise StackError(f"stack {name}: {exc}") from exc
    status = str(described["StackStatus"]) if described else None
    previous = {p["ParameterKey"]: p["ParameterValue"] for p in (described or {}).get("Parameters", [])}
    arguments = {
        "StackName": name,
        # Two files as one body; compact JSON keeps it well under TemplateBody's 51,200 bytes.
        "TemplateBody": json.dumps(template, separators=(",", ":")),
        "Parameters": stack_parameters(stage, template, rest_api_id, overrides, previous),
        "Capabilities": ["CAPABILITY_NAMED_IAM"],
        "Tags": [{"Key": "app", "Value": "taskproc"}, {"Key": "stage", "Value": stage.name}],
    }
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


def _overrides(assignments: list[str]) -> dict[str, str]:
    """NAME=VALUE strings as a dict.

    Raises:
        StackError: one has no '='.
    """
    overrides = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not name:
            raise StackError(f"--parameter wants NAME=VALUE, got {assignment!r}")
        overrides[name] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("check", "remove"):
        commands.add_parser(command).add_argument("stage")
    deploy = commands.add_parser("deploy")
    deploy.add_argument("stage")
    deploy.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a template parameter the stage's configuration does not decide (e.g. AlarmEmail=ops@example.com)",
    )
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
        overrides = _overrides(args.parameter) if args.command == "deploy" else {}
        session = boto3.session.Session()
        check_aws(session)
        cloudformation = session.client("cloudformation")
        if args.command == "check":
            print(f"AWS region {session.region_name}; credentials found")
        elif args.command == "deploy":
            require_deployable(stage)
            rest_api_id = deployed_rest_api_id(stage.name)
            print("\n".join(deploy_report(stage, deploy_stack(cloudformation, stage, rest_api_id, overrides))))
        else:
            if remove_stack(cloudformation, args.stage):
                print(f"deleted stack {stack_name(args.stage)}")
            else:
                print(f"no stack {stack_name(args.stage)} to delete")
            if stage.retain_table:
                print(table_kept_note(stage))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
