"""The packaged alarms, topic and dashboard: every metric they name is one the code emits or AWS publishes.

A typo in a metric name, namespace or dimension makes an alarm that never fires
and a graph that stays empty, and CloudFormation accepts both. So each metric is
checked against chalicelib.metrics (namespace `taskproc`, dimension sets [stage]
and [stage, type]) or against the metrics SQS and Lambda document.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chalicelib.metrics import NAMESPACE, Metric
from infra import stack
from tests.deploy.conftest import PACKAGED_STAGES, Packaged

# The dimension sets chalicelib.metrics publishes every metric under (the API contract).
EMITTED_DIMENSION_SETS = ({"stage"}, {"stage", "type"})
# What AWS documents: namespace -> (the dimension naming the resource, metric names).
# SQS: "Available CloudWatch metrics for Amazon SQS"; Lambda: "Types of metrics for Lambda functions".
AWS_METRICS = {
    "AWS/SQS": (
        "QueueName",
        {
            "ApproximateAgeOfOldestMessage",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesVisible",
            "NumberOfEmptyReceives",
            "NumberOfMessagesDeleted",
            "NumberOfMessagesReceived",
            "NumberOfMessagesSent",
            "SentMessageSize",
        },
    ),
    "AWS/Lambda": (
        "FunctionName",
        {
            "Invocations",
            "Errors",
            "Throttles",
            "Duration",
            "ConcurrentExecutions",
            "DeadLetterErrors",
            "DestinationDeliveryFailures",
            "RecursiveInvocationsDropped",
        },
    ),
}
CONSUMERS = {
    "ProcessTasks": "process_tasks",
    "ProcessHighPriorityTasks": "process_high_priority_tasks",
    "ProcessLowPriorityTasks": "process_low_priority_tasks",
    "HandleDeadLetters": "handle_dead_letters",
}
# The priority classes' consumers, whose errors are failures exactly where process_tasks' are.
CLASS_CONSUMERS = ("ProcessTasks", "ProcessHighPriorityTasks", "ProcessLowPriorityTasks")
QUEUES = ("TasksQueue", "HighPriorityTasksQueue", "LowPriorityTasksQueue", "DeadLetterQueue")
TASK_QUEUES = ("tasks", "tasks-high", "tasks-low")
PSEUDO_PARAMETERS = {"AWS::Region": "us-east-1", "AWS::Partition": "aws", "AWS::AccountId": "123456789012"}
# Parameters an operator may set when deploying, and their defaults.
THRESHOLD_DEFAULTS = {
    "AlarmEmail": "",
    "DeadLetterAlarmMinutes": 5,
    "QueueAgeThresholdSeconds": 1800,
    "HighPriorityQueueAgeThresholdSeconds": 300,
    "FailedSharePercentThreshold": 10,
    "FailedShareMinimumTasks": 20,
    "ConsumerErrorsThreshold": 0,
    "ConsumerThrottlesThreshold": 0,
}


def _resolve(value: Any, names: dict[str, str]) -> Any:
    """The Ref and Fn::Sub forms the monitoring template uses, resolved with parameter defaults."""
    if isinstance(value, dict) and "Ref" in value:
        return names[value["Ref"]]
    if isinstance(value, dict) and "Fn::Sub" in value:
        return re.sub(r"\$\{([\w:]+)\}", lambda m: str(names[m.group(1)]), value["Fn::Sub"])
    return value


@pytest.fixture(params=PACKAGED_STAGES)
def package(request: pytest.FixtureRequest, packaged: dict[str, Packaged]) -> Packaged:
    return packaged[request.param]


def _names(package: Packaged) -> dict[str, str]:
    defaults = {name: str(p["Default"]) for name, p in package.template["Parameters"].items()}
    return {**defaults, **PSEUDO_PARAMETERS}


def _alarms(package: Packaged) -> dict[str, dict[str, Any]]:
    return package.resources_of_type("AWS::CloudWatch::Alarm")


def _alarm_metrics(alarm: dict[str, Any], names: dict[str, str]) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric, dimensions) of each metric an alarm reads, from either alarm form."""
    properties = alarm["Properties"]
    metrics = []
    if "MetricName" in properties:
        metrics.append((properties["Namespace"], properties["MetricName"], properties.get("Dimensions", [])))
    for query in properties.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            metrics.append((metric["Namespace"], metric["MetricName"], metric.get("Dimensions", [])))
    return [
        (namespace, name, {d["Name"]: _resolve(d["Value"], names) for d in dimensions})
        for namespace, name, dimensions in metrics
    ]


def _dashboard_body(package: Packaged) -> dict[str, Any]:
    (dashboard,) = package.resources_of_type("AWS::CloudWatch::Dashboard").values()
    return dict(json.loads(_resolve(dashboard["Properties"]["DashboardBody"], _names(package))))


def _widget_metrics(widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """(namespace, metric, dimensions, options) of each line of a metric widget."""
    lines = []
    for line in widget["properties"].get("metrics", []):
        options = line[-1] if isinstance(line[-1], dict) else {}
        fields = line[:-1] if options else line
        assert "." not in fields, f"write every field out (no '.' shorthand) so it can be checked: {line}"
        namespace, name, *pairs = fields
        assert len(pairs) % 2 == 0, line
        lines.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)), options))
    return lines


def metric_problems(
    namespace: str, name: str, dimensions: dict[str, str], stage: str, resources: dict[str, set[str]]
) -> list[str]:
    """Why CloudWatch would hold no data for this metric, or [] if the code or AWS publishes it.

    `resources` maps a resource dimension (QueueName, FunctionName) to the stage's own names.
    """
    where = f"{namespace} {name} {dimensions}"
    if namespace == NAMESPACE:
        problems = []
        if name not in {metric.value for metric in Metric}:
            problems.append(f"{where}: chalicelib.metrics emits no metric {name!r}")
        if set(dimensions) not in EMITTED_DIMENSION_SETS:
            problems.append(f"{where}: emitted dimension sets are {EMITTED_DIMENSION_SETS}")
        elif dimensions["stage"] != stage:
            problems.append(f"{where}: not this stage ({stage})")
        return problems
    if namespace not in AWS_METRICS:
        return [f"{where}: neither {NAMESPACE!r} nor a namespace this test knows ({', '.join(AWS_METRICS)})"]
    dimension, documented = AWS_METRICS[namespace]
    problems = []
    if name not in documented:
        problems.append(f"{where}: {namespace} documents no metric {name!r}")
    if set(dimensions) != {dimension}:
        problems.append(f"{where}: wants the one dimension {dimension}")
    elif dimensions[dimension] not in resources[dimension]:
        problems.append(f"{where}: {dimensions[dimension]!r} is none of the stage's {sorted(resources[dimension])}")
    return problems


def _stage_resources(package: Packaged) -> dict[str, set[str]]:
    names = _names(package)
    template = package.template["Resources"]
    return {
        "QueueName": {_resolve(template[queue]["Properties"]["QueueName"], names) for queue in QUEUES},
        "FunctionName": {template[function]["Properties"]["FunctionName"] for function in [*CONSUMERS, "Tick"]},
    }


def test_every_alarm_reads_a_metric_that_is_published(package: Packaged) -> None:
    names, resources = _names(package), _stage_resources(package)
    alarms = _alarms(package)
    assert len(alarms) == 16  # 8, each other class's queue age, errors and throttles, and the ticker's two
    problems = []
    for logical_id, alarm in alarms.items():
        metrics = _alarm_metrics(alarm, names)
        assert metrics, logical_id
        for namespace, name, dimensions in metrics:
            problems += [
                f"{logical_id}: {p}" for p in metric_problems(namespace, name, dimensions, package.stage, resources)
            ]
    assert problems == []


def test_every_dashboard_line_reads_a_metric_that_is_published(package: Packaged) -> None:
    body = _dashboard_body(package)
    resources = _stage_resources(package)
    problems = []
    widgets = [w for w in body["widgets"] if w["type"] == "metric"]
    assert len(widgets) == 6
    for widget in widgets:
        assert widget["properties"]["region"] == PSEUDO_PARAMETERS["AWS::Region"], widget["properties"]["title"]
        for namespace, name, dimensions, _ in _widget_metrics(widget):
            problems += metric_problems(namespace, name, dimensions, package.stage, resources)
    assert problems == []


def test_the_checker_catches_a_misspelt_name_a_wrong_dimension_and_another_stage() -> None:
    resources = {"QueueName": {"taskproc-dev-tasks"}, "FunctionName": {"taskproc-dev-process_tasks"}}
    assert metric_problems(NAMESPACE, "TasksFailed", {"stage": "dev"}, "dev", resources) == []
    assert metric_problems(NAMESPACE, "TasksFailed", {"stage": "dev", "type": "simulate"}, "dev", resources) == []
    assert metric_problems(NAMESPACE, "TaskFailed", {"stage": "dev"}, "dev", resources)
    assert metric_problems(NAMESPACE, "TasksFailed", {"Stage": "dev"}, "dev", resources)
    assert metric_problems(NAMESPACE, "TasksFailed", {"stage": "dev", "id": "t-1"}, "dev", resources)
    assert metric_problems(NAMESPACE, "TasksFailed", {"stage": "prod"}, "dev", resources)
    assert metric_problems("TaskProc", "TasksFailed", {"stage": "dev"}, "dev", resources)
    assert (
        metric_problems(
            "AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": "taskproc-dev-tasks"}, "dev", resources
        )
        == []
    )
    assert metric_problems(
        "AWS/SQS", "ApproximateAgeOfOldestMessages", {"QueueName": "taskproc-dev-tasks"}, "dev", resources
    )
    assert metric_problems(
        "AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": "taskproc-prod-tasks"}, "dev", resources
    )
    assert metric_problems("AWS/Lambda", "Errors", {"Function": "taskproc-dev-process_tasks"}, "dev", resources)
    assert metric_problems("AWS/Lambda", "Errors", {"FunctionName": "taskproc-dev-process-tasks"}, "dev", resources)


def test_the_alarms_watch_the_dead_letters_the_queue_age_the_failed_share_the_repairs_and_the_consumers(
    package: Packaged,
) -> None:
    names = _names(package)
    watched = {
        (namespace, name, tuple(sorted(dimensions.items())))
        for alarm in _alarms(package).values()
        for namespace, name, dimensions in _alarm_metrics(alarm, names)
    }
    stage = package.stage
    required = {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", (("QueueName", f"taskproc-{stage}-dead-letters"),)),
        *(
            ("AWS/SQS", "ApproximateAgeOfOldestMessage", (("QueueName", f"taskproc-{stage}-{queue}"),))
            for queue in TASK_QUEUES
        ),
        (NAMESPACE, Metric.TASKS_FAILED.value, (("stage", stage),)),
        (NAMESPACE, Metric.COMPLETED.value, (("stage", stage),)),
        (NAMESPACE, Metric.TASKS_ADOPTED.value, (("stage", stage),)),
    }
    for function in CONSUMERS.values():
        for metric in ("Errors", "Throttles"):
            required.add(("AWS/Lambda", metric, (("FunctionName", f"taskproc-{stage}-{function}"),)))
    # The ticker: failing, or not running at all.
    for metric in ("Errors", "Invocations"):
        required.add(("AWS/Lambda", metric, (("FunctionName", f"taskproc-{stage}-tick"),)))
    assert watched == required


def test_the_failed_share_is_failed_over_failed_plus_completed_in_15_minutes(package: Packaged) -> None:
    alarm = _alarms(package)["FailedShareAlarm"]["Properties"]
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    assert {id_: q["MetricStat"]["Metric"]["MetricName"] for id_, q in queries.items() if "MetricStat" in q} == {
        "failed": Metric.TASKS_FAILED.value,
        "completed": Metric.COMPLETED.value,
    }
    for id_ in ("failed", "completed"):
        assert queries[id_]["MetricStat"]["Period"] == 900 and queries[id_]["MetricStat"]["Stat"] == "Sum"
        assert queries[id_]["ReturnData"] is False
    (returned,) = [q for q in alarm["Metrics"] if q.get("ReturnData", True)]
    expression = " ".join(_resolve(returned["Expression"], _names(package)).split())
    assert "100 * FILL(failed, 0) / (FILL(failed, 0) + FILL(completed, 0))" in expression
    assert f">= {THRESHOLD_DEFAULTS['FailedShareMinimumTasks']}" in expression
    assert alarm["Threshold"] == {"Ref": "FailedSharePercentThreshold"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_the_process_tasks_errors_alarm_exists_only_where_its_errors_are_failures(package: Packaged) -> None:
    """Without item-failure reports, process_tasks raises to hand back a batch with a retrying task."""
    template = package.template
    for consumer in CLASS_CONSUMERS:
        alarm = template["Resources"][f"{consumer}ErrorsAlarm"]
        condition = template["Conditions"][alarm["Condition"]]
        assert condition == {"Fn::Equals": [{"Ref": "ConsumersReportItemFailures"}, "true"]}, consumer
    pinned = template["Parameters"]["ConsumersReportItemFailures"]
    reports = stack.load_stage(package.stage).reports_batch_item_failures
    assert pinned["AllowedValues"] == [str(reports).lower()]
    assert "Condition" not in template["Resources"]["HandleDeadLettersErrorsAlarm"]


def test_every_alarm_notifies_the_stage_topic_which_mails_only_a_given_address(package: Packaged) -> None:
    template = package.template
    (topic_id,) = package.resources_of_type("AWS::SNS::Topic")
    assert _resolve(template["Resources"][topic_id]["Properties"]["TopicName"], _names(package)) == (
        f"taskproc-{package.stage}-alarms"
    )
    for logical_id, alarm in _alarms(package).items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}], logical_id
        assert alarm["Properties"]["OKActions"] == [{"Ref": topic_id}], logical_id
        assert alarm["Properties"]["AlarmName"]["Fn::Sub"].startswith("taskproc-${Stage}-"), logical_id
    (subscription,) = package.resources_of_type("AWS::SNS::Subscription").values()
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": topic_id},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert template["Conditions"][subscription["Condition"]] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }


def test_thresholds_are_parameters_with_sensible_defaults_left_to_the_deployer(package: Packaged) -> None:
    parameters = package.template["Parameters"]
    for name, default in THRESHOLD_DEFAULTS.items():
        assert parameters[name]["Default"] == default, name
        assert "AllowedValues" not in parameters[name], f"{name} is the deployer's to set"
    stage = stack.load_stage(package.stage)
    for name, value in stage.pinned_parameters().items():
        assert parameters[name]["AllowedValues"] == [value], name
    assert stack.REST_API_PARAMETER not in parameters, "the packaged template has its own API"


def test_the_dashboard_shows_outcomes_latency_queues_dead_letters_errors_and_concurrency(package: Packaged) -> None:
    widgets = {w["properties"]["title"]: _widget_metrics(w) for w in _dashboard_body(package)["widgets"]}
    stage = package.stage

    def lines(title_start: str) -> set[tuple[str, str, tuple[tuple[str, str], ...], str | None]]:
        (title,) = [title for title in widgets if title.startswith(title_start)]
        return {
            (ns, name, tuple(sorted(dims.items())), options.get("stat")) for ns, name, dims, options in widgets[title]
        }

    on_stage = (("stage", stage),)
    throughput = {name for _, name, dimensions, _ in lines("Throughput") if dimensions == on_stage}
    assert throughput >= {"TasksAccepted", "TasksCompleted", "TasksFailed", "RetriesScheduled"}
    assert lines("Latency") == {
        (NAMESPACE, metric, on_stage, percentile)
        for metric in ("AttemptDuration", "EndToEndLatency")
        for percentile in ("p50", "p90", "p99")
    }
    tasks_queue = (("QueueName", f"taskproc-{stage}-tasks"),)
    assert {name for _, name, dimensions, _ in lines("Task queue") if dimensions == tasks_queue} >= {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateAgeOfOldestMessage",
    }
    for queue in TASK_QUEUES[1:]:
        class_queue = (("QueueName", f"taskproc-{stage}-{queue}"),)
        assert {name for _, name, dimensions, _ in lines("Task queue") if dimensions == class_queue} >= {
            "ApproximateNumberOfMessagesVisible",
            "ApproximateAgeOfOldestMessage",
        }, queue
    dead_letters = lines("Dead letters")
    assert (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        (("QueueName", f"taskproc-{stage}-dead-letters"),),
        "Maximum",
    ) in dead_letters
    assert (NAMESPACE, "DeadLettersRecorded", on_stage, "Sum") in dead_letters
    functions = [(("FunctionName", f"taskproc-{stage}-{function}"),) for function in CONSUMERS.values()]
    errors = {(name, dimensions) for _, name, dimensions, _ in lines("Consumer errors")}
    assert errors == {(metric, function) for metric in ("Errors", "Throttles") for function in functions}
    concurrency = {(name, dimensions) for _, name, dimensions, _ in lines("Consumer concurrency")}
    assert concurrency == {("ConcurrentExecutions", function) for function in functions}


def test_the_consumers_carry_the_names_the_alarms_use(package: Packaged) -> None:
    """chalice package leaves names to CloudFormation; the merge template gives them chalice deploy's."""
    resources = package.template["Resources"]
    for logical_id, function in CONSUMERS.items():
        assert resources[logical_id]["Properties"]["FunctionName"] == f"taskproc-{package.stage}-{function}"
    assert resources["APIHandler"]["Properties"]["FunctionName"] == f"taskproc-{package.stage}"
