"""AWS's limits, enforced offline (local/aws_limits.py), and taskproc inside each of them.

Every test of this suite runs under the limits (tests/conftest.py installs them in
the `aws` fixture). Here each limit is shown refused, with AWS's error code, at
the first byte over and taken at the limit itself: by the tests' in-process moto
and, for some, by the embedded endpoint in its own process (`python -m local aws`,
as `make aws` starts it). Then what taskproc builds is measured against each one.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.models import (
    MAX_BATCH_TASKS,
    MAX_TASK_BYTES,
    MAX_TASK_ID_BYTES,
    MAX_TASK_ID_LENGTH,
    Outcome,
    Status,
    Task,
)
from chalicelib.operate.operations import MAX_HISTORY_ENTRIES
from chalicelib.registry import MAX_RESULT_BYTES
from chalicelib.settings import MAX_VISIBILITY_SECONDS
from chalicelib.tasks.index import SHARD_ATTRIBUTE, SORT_ATTRIBUTE, index_attributes
from chalicelib.tasks.queue import SQS_BATCH_BYTES, SQS_BATCH_LIMIT, Outgoing, batch_chunks
from chalicelib.tasks.record import attempt_entry, iso_from_ms
from chalicelib.tasks.table import MAX_ERROR_BYTES, serialize
from local import aws_limits
from local.aws_limits import (
    BATCH_MAX_ENTRIES,
    DELAY_MAX_SECONDS,
    ITEM_MAX_BYTES,
    MESSAGE_MAX_BYTES,
    PARTITION_KEY_MAX_BYTES,
    SORT_KEY_MAX_BYTES,
    VISIBILITY_MAX_SECONDS,
)

TABLE = "taskproc-test-tasks"
QUEUE = "taskproc-test-tasks"
# "id" (2 bytes) and a one-byte string, and "blob" (4 bytes) before its value.
SMALL_ITEM_BYTES = 3 + 4
# The widest updatedAt the store writes, as in every index sort key.
WIDEST_TIME = iso_from_ms(253_402_300_799_999)  # 9999-12-31T23:59:59.999Z


def code_of(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def refused(call: Any, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value


@pytest.fixture
def dynamodb(aws: boto3.session.Session) -> Any:
    return aws.client("dynamodb")


@pytest.fixture
def sqs(aws: boto3.session.Session) -> Any:
    return aws.client("sqs")


@pytest.fixture
def queue_url(sqs: Any) -> str:
    return str(sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"])


def s(text: str) -> dict[str, str]:
    return {"S": text}


def indexed(task_id: str, sort_key: str, shard: str = "FAILED#0") -> dict[str, Any]:
    return {"id": s(task_id), SHARD_ATTRIBUTE: s(shard), SORT_ATTRIBUTE: s(sort_key)}


def exists(dynamodb: Any, task_id: str) -> bool:
    return "Item" in dynamodb.get_item(TableName=TABLE, Key={"id": s(task_id)}, ConsistentRead=True)


# --- DynamoDB: key sizes --------------------------------------------------------------


def put(dynamodb: Any, item: dict[str, Any]) -> None:
    dynamodb.put_item(TableName=TABLE, Item=item)


def update(dynamodb: Any, item: dict[str, Any]) -> None:
    """Write `item` as an UpdateItem of its attributes other than the key."""
    others = {name: value for name, value in item.items() if name != "id"}
    dynamodb.update_item(
        TableName=TABLE,
        Key={"id": item["id"]},
        UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in others),
        ExpressionAttributeNames={f"#{name}": name for name in others},
        ExpressionAttributeValues={f":{name}": value for name, value in others.items()},
    )


def batch_write(dynamodb: Any, item: dict[str, Any]) -> None:
    dynamodb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": item}}]})


def transact_put(dynamodb: Any, item: dict[str, Any]) -> None:
    dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": TABLE, "Item": item}}])


def transact_update(dynamodb: Any, item: dict[str, Any]) -> None:
    others = {name: value for name, value in item.items() if name != "id"}
    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": {"id": item["id"]},
                    "UpdateExpression": "SET " + ", ".join(f"#{name} = :{name}" for name in others),
                    "ExpressionAttributeNames": {f"#{name}": name for name in others},
                    "ExpressionAttributeValues": {f":{name}": value for name, value in others.items()},
                }
            }
        ]
    )


WRITES = [put, update, batch_write, transact_put, transact_update]
# How each write answers a refused item: a transaction is cancelled, with the reason, as on DynamoDB.
REFUSAL_CODE = {
    put: "ValidationException",
    update: "ValidationException",
    batch_write: "ValidationException",
    transact_put: "TransactionCanceledException",
    transact_update: "TransactionCanceledException",
}


def assert_refused_as_aws_does(error: ClientError, write: Any, message: str) -> None:
    assert code_of(error) == REFUSAL_CODE[write]
    if code_of(error) == "TransactionCanceledException":
        reasons = error.response["CancellationReasons"]
        assert [reason["Code"] for reason in reasons] == ["ValidationError"]
        assert message in reasons[0]["Message"]
    else:
        assert message in error.response["Error"]["Message"]


@pytest.mark.parametrize("write", WRITES, ids=lambda write: write.__name__)
def test_every_write_refuses_a_partition_key_over_2048_bytes(dynamodb: Any, write: Any) -> None:
    at_limit = "é" * (PARTITION_KEY_MAX_BYTES // 2)  # 2,048 bytes in 1,024 characters
    write(dynamodb, {"id": s(at_limit), "status": s("PENDING")})
    assert exists(dynamodb, at_limit)

    error = refused(write, dynamodb=dynamodb, item={"id": s(at_limit + "x"), "status": s("PENDING")})
    assert_refused_as_aws_does(error, write, "Size of hashkey has exceeded the maximum size limit")
    assert not exists(dynamodb, at_limit + "x")


@pytest.mark.parametrize("write", WRITES, ids=lambda write: write.__name__)
def test_every_write_refuses_an_index_sort_key_over_1024_bytes(dynamodb: Any, write: Any) -> None:
    at_limit = "😀" * (SORT_KEY_MAX_BYTES // 4)  # 1,024 bytes in 256 characters
    write(dynamodb, indexed("at-limit", at_limit))
    assert exists(dynamodb, "at-limit")

    error = refused(write, dynamodb=dynamodb, item=indexed("over", at_limit + "x"))
    assert_refused_as_aws_does(error, write, "Aggregated size of all range keys has exceeded the size limit")
    assert not exists(dynamodb, "over")


@pytest.mark.parametrize("write", WRITES, ids=lambda write: write.__name__)
def test_every_write_refuses_an_index_partition_key_over_2048_bytes(dynamodb: Any, write: Any) -> None:
    write(dynamodb, indexed("at-limit", "t", shard="x" * PARTITION_KEY_MAX_BYTES))
    error = refused(write, dynamodb=dynamodb, item=indexed("over", "t", shard="x" * (PARTITION_KEY_MAX_BYTES + 1)))
    assert_refused_as_aws_does(error, write, "Size of hashkey has exceeded the maximum size limit")
    assert not exists(dynamodb, "over")


def test_an_update_refused_for_its_index_key_leaves_the_item_as_it_was(dynamodb: Any) -> None:
    put(dynamodb, {"id": s("t"), "status": s("PROCESSING")})
    error = refused(
        dynamodb.update_item,
        TableName=TABLE,
        Key={"id": s("t")},
        UpdateExpression="SET #status = :failed, #sort = :sort",
        ExpressionAttributeNames={"#status": "status", "#sort": SORT_ATTRIBUTE},
        ExpressionAttributeValues={":failed": s("FAILED"), ":sort": s("x" * (SORT_KEY_MAX_BYTES + 1))},
    )
    assert code_of(error) == "ValidationException"
    item = dynamodb.get_item(TableName=TABLE, Key={"id": s("t")}, ConsistentRead=True)["Item"]
    assert item == {"id": s("t"), "status": s("PROCESSING")}


def test_a_failed_condition_is_answered_before_a_key_size(dynamodb: Any) -> None:
    # DynamoDB evaluates the condition on the item as it is; taskproc's lease logic reads that answer.
    put(dynamodb, {"id": s("t"), "status": s("COMPLETED")})
    error = refused(
        dynamodb.update_item,
        TableName=TABLE,
        Key={"id": s("t")},
        UpdateExpression="SET #sort = :sort",
        ConditionExpression="#status = :processing",
        ExpressionAttributeNames={"#sort": SORT_ATTRIBUTE, "#status": "status"},
        ExpressionAttributeValues={":sort": s("x" * (SORT_KEY_MAX_BYTES + 1)), ":processing": s("PROCESSING")},
    )
    assert code_of(error) == "ConditionalCheckFailedException"


# --- DynamoDB: item size ---------------------------------------------------------------


def blob_item(task_id: str, total_bytes: int) -> dict[str, Any]:
    """An item of exactly `total_bytes` by DynamoDB's count: a one-character id and a blob."""
    assert len(task_id) == 1
    return {"id": s(task_id), "blob": s("x" * (total_bytes - SMALL_ITEM_BYTES))}


@pytest.mark.parametrize("write", WRITES, ids=lambda write: write.__name__)
def test_every_write_takes_an_item_of_400_kb_and_refuses_one_byte_more(dynamodb: Any, write: Any) -> None:
    # 409,600 bytes: moto's own count refused anything over 405,000.
    write(dynamodb, blob_item("a", ITEM_MAX_BYTES))
    assert exists(dynamodb, "a")

    error = refused(write, dynamodb=dynamodb, item=blob_item("b", ITEM_MAX_BYTES + 1))
    assert_refused_as_aws_does(error, write, "Item size")
    assert not exists(dynamodb, "b")


def test_an_update_that_grows_an_item_past_400_kb_is_refused_and_changes_nothing(dynamodb: Any) -> None:
    put(dynamodb, blob_item("a", ITEM_MAX_BYTES - 10))
    error = refused(
        dynamodb.update_item,
        TableName=TABLE,
        Key={"id": s("a")},
        UpdateExpression="SET #more = :more",
        ExpressionAttributeNames={"#more": "more"},
        ExpressionAttributeValues={":more": s("x" * 7)},  # 4 + 7 bytes: 1 over
    )
    assert code_of(error) == "ValidationException"
    assert "Item size to update has exceeded the maximum allowed size" in error.response["Error"]["Message"]
    item = dynamodb.get_item(TableName=TABLE, Key={"id": s("a")}, ConsistentRead=True)["Item"]
    assert set(item) == {"id", "blob"}


def test_an_update_replacing_a_large_attribute_counts_it_once(dynamodb: Any) -> None:
    # moto counted the old value and the new one together; 2 x 250,000 bytes is over 400 KB, one is not.
    put(dynamodb, {"id": s("a"), "blob": s("x" * 250_000)})
    update(dynamodb, {"id": s("a"), "blob": s("y" * 250_000)})
    item = dynamodb.get_item(TableName=TABLE, Key={"id": s("a")}, ConsistentRead=True)["Item"]
    assert item["blob"]["S"][0] == "y"


def test_list_elements_count_their_overhead_as_dynamodb_counts_it() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    # 3 bytes for the list, and each element 1 byte of its own beside its value.
    history = DynamoType({"L": [{"M": {"kind": {"S": "cancel"}}}, {"NULL": True}, {"N": "12345"}]})
    entry = 3 + (4 + 6 + 1)  # a map: 3 bytes, and "kind" with its value and 1 byte
    assert aws_limits.item_size({"history": history}) == 7 + 3 + (entry + 1) + (1 + 1) + (4 + 1)


def test_a_list_under_moto_count_but_over_dynamodb_count_is_refused(dynamodb: Any) -> None:
    # 140,000 booleans: 140,000 bytes by moto's count, 280,003 by DynamoDB's, with the blob over 400 KB.
    flags = {"L": [{"BOOL": True}] * 140_000}
    item = {"id": s("a"), "flags": flags, "blob": s("x" * 130_000)}
    error = refused(put, dynamodb=dynamodb, item=item)
    assert code_of(error) == "ValidationException"
    assert not exists(dynamodb, "a")


def test_a_batch_with_one_item_too_large_writes_none_of_them(dynamodb: Any) -> None:
    error = refused(
        dynamodb.batch_write_item,
        RequestItems={
            TABLE: [
                {"PutRequest": {"Item": {"id": s("fits")}}},
                {"PutRequest": {"Item": blob_item("b", ITEM_MAX_BYTES + 1)}},
            ]
        },
    )
    assert code_of(error) == "ValidationException"
    assert not exists(dynamodb, "fits")


# --- SQS --------------------------------------------------------------------------------


def test_a_message_is_measured_in_bytes_up_to_the_queue_maximum(sqs: Any, queue_url: str) -> None:
    maximum = int(
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["MaximumMessageSize"])["Attributes"][
            "MaximumMessageSize"
        ]
    )
    assert maximum == MESSAGE_MAX_BYTES  # the template sets none: SQS's default, 1 MiB
    sqs.send_message(QueueUrl=queue_url, MessageBody="é" * (maximum // 2))
    # One character more is 2 bytes over; moto counted characters and took it.
    error = refused(sqs.send_message, QueueUrl=queue_url, MessageBody="é" * (maximum // 2 + 1))
    assert code_of(error) == "InvalidParameterValue"
    assert f"Message must be shorter than {maximum} bytes" in error.response["Error"]["Message"]


def test_message_attributes_count_toward_the_message_size(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="small", Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
    attributes = {"reason": {"DataType": "String", "StringValue": "x" * 10}}  # 6 + 6 + 10 bytes
    sqs.send_message(QueueUrl=url, MessageBody="b" * (1024 - 22), MessageAttributes=attributes)
    error = refused(sqs.send_message, QueueUrl=url, MessageBody="b" * (1024 - 21), MessageAttributes=attributes)
    assert code_of(error) == "InvalidParameterValue"


def test_a_batch_of_more_than_10_entries_is_refused(sqs: Any, queue_url: str) -> None:
    entries = [{"Id": str(n), "MessageBody": "m"} for n in range(BATCH_MAX_ENTRIES + 1)]
    sqs.send_message_batch(QueueUrl=queue_url, Entries=entries[:BATCH_MAX_ENTRIES])
    error = refused(sqs.send_message_batch, QueueUrl=queue_url, Entries=entries)
    assert code_of(error) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"


def test_a_batch_over_1_mib_in_bytes_is_refused(sqs: Any, queue_url: str) -> None:
    half = "é" * (MESSAGE_MAX_BYTES // 4)  # 524,288 bytes in 262,144 characters
    sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": "a", "MessageBody": half}, {"Id": "b", "MessageBody": half}]
    )
    error = refused(
        sqs.send_message_batch,
        QueueUrl=queue_url,
        Entries=[{"Id": "a", "MessageBody": half}, {"Id": "b", "MessageBody": half + "x"}],
    )
    assert code_of(error) == "AWS.SimpleQueueService.BatchRequestTooLong"


def test_a_delay_over_900_seconds_is_refused(sqs: Any, queue_url: str) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="m", DelaySeconds=DELAY_MAX_SECONDS)
    error = refused(sqs.send_message, QueueUrl=queue_url, MessageBody="m", DelaySeconds=DELAY_MAX_SECONDS + 1)
    assert code_of(error) == "InvalidParameterValue"
    answer = sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": "late", "MessageBody": "m", "DelaySeconds": DELAY_MAX_SECONDS + 1}]
    )
    assert [(failure["Id"], failure["Code"]) for failure in answer["Failed"]] == [("late", "InvalidParameterValue")]


def test_a_visibility_over_12_hours_is_refused(sqs: Any, queue_url: str) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=queue_url)["Messages"][0]["ReceiptHandle"]
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=VISIBILITY_MAX_SECONDS - 60
    )
    error = refused(
        sqs.change_message_visibility,
        QueueUrl=queue_url,
        ReceiptHandle=handle,
        VisibilityTimeout=VISIBILITY_MAX_SECONDS + 1,
    )
    assert code_of(error) == "InvalidParameterValue"
    answer = sqs.change_message_visibility_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": "long", "ReceiptHandle": handle, "VisibilityTimeout": VISIBILITY_MAX_SECONDS + 1}],
    )
    assert [(failure["Id"], failure["Code"]) for failure in answer["Failed"]] == [("long", "InvalidParameterValue")]


@pytest.mark.parametrize("character", ["\ufffe", "\uffff", "\x01"], ids=["U+FFFE", "U+FFFF", "U+0001"])
def test_a_message_with_a_character_outside_xml_is_refused(sqs: Any, queue_url: str, character: str) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="tab\t, line\n, return\r, \ufffd and 😀 are allowed")
    error = refused(sqs.send_message, QueueUrl=queue_url, MessageBody=f"a{character}b")
    assert code_of(error) == "InvalidMessageContents"
    error = refused(sqs.send_message_batch, QueueUrl=queue_url, Entries=[{"Id": "a", "MessageBody": character}])
    assert code_of(error) == "InvalidMessageContents"
    attributes = {"reason": {"DataType": "String", "StringValue": character}}
    error = refused(sqs.send_message, QueueUrl=queue_url, MessageBody="m", MessageAttributes=attributes)
    assert code_of(error) == "InvalidMessageContents"


# --- the embedded endpoint, in its own process ------------------------------------------


def embedded(service: str, endpoint_url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_the_embedded_endpoint_refuses_an_index_sort_key_over_1024_bytes_on_update(endpoint: str) -> None:
    dynamodb = embedded("dynamodb", endpoint)
    (table,) = [name for name in dynamodb.list_tables()["TableNames"] if name.endswith("-tasks")]
    dynamodb.put_item(TableName=table, Item={"id": s("long-sort-key"), "status": s("PROCESSING")})

    def fail_with_sort_key(sort_key: str) -> None:
        dynamodb.update_item(
            TableName=table,
            Key={"id": s("long-sort-key")},
            UpdateExpression="SET #shard = :shard, #sort = :sort",
            ExpressionAttributeNames={"#shard": SHARD_ATTRIBUTE, "#sort": SORT_ATTRIBUTE},
            ExpressionAttributeValues={":shard": s("FAILED#0"), ":sort": s(sort_key)},
        )

    fail_with_sort_key("😀" * (SORT_KEY_MAX_BYTES // 4))
    error = refused(fail_with_sort_key, sort_key="😀" * (SORT_KEY_MAX_BYTES // 4) + "x")
    assert code_of(error) == "ValidationException"
    assert "Aggregated size of all range keys" in error.response["Error"]["Message"]


def test_the_embedded_endpoint_refuses_a_message_over_its_queue_maximum_in_bytes(endpoint: str) -> None:
    sqs = embedded("sqs", endpoint)
    (url,) = [url for url in sqs.list_queues()["QueueUrls"] if url.endswith("-tasks")]
    sqs.send_message(QueueUrl=url, MessageBody="é" * (MESSAGE_MAX_BYTES // 2))
    error = refused(sqs.send_message, QueueUrl=url, MessageBody="é" * (MESSAGE_MAX_BYTES // 2 + 1))
    assert code_of(error) == "InvalidParameterValue"
    error = refused(sqs.send_message, QueueUrl=url, MessageBody="m", DelaySeconds=DELAY_MAX_SECONDS + 1)
    assert code_of(error) == "InvalidParameterValue"


# --- taskproc inside the limits ----------------------------------------------------------

LONGEST_IDS = {
    "ascii": "x" * MAX_TASK_ID_LENGTH,
    "three-byte": "\u210c" * MAX_TASK_ID_LENGTH,
    "four-byte": "😀" * (MAX_TASK_ID_BYTES // 4),
}


@pytest.mark.parametrize("task_id", LONGEST_IDS.values(), ids=LONGEST_IDS.keys())
def test_every_key_built_from_the_longest_id_fits(task_id: str) -> None:
    assert len(task_id.encode("utf-8")) <= PARTITION_KEY_MAX_BYTES  # the table's key
    for status in (Status.FAILED, Status.RETRYING, Status.CANCELLED):
        keys = index_attributes(status, task_id, WIDEST_TIME)
        assert len(keys[SHARD_ATTRIBUTE].encode("utf-8")) <= PARTITION_KEY_MAX_BYTES
        assert len(keys[SORT_ATTRIBUTE].encode("utf-8")) <= SORT_KEY_MAX_BYTES


def test_the_id_byte_limit_was_needed_256_four_byte_characters_overflow_the_sort_key() -> None:
    keys = index_attributes(Status.FAILED, "😀" * MAX_TASK_ID_LENGTH, WIDEST_TIME)
    assert len(keys[SORT_ATTRIBUTE].encode("utf-8")) > SORT_KEY_MAX_BYTES


def test_the_largest_item_taskproc_builds_fits(dynamodb: Any) -> None:
    """A maximal task (its serialized form at MAX_TASK_BYTES) with a full history of attempts,
    each failing with the longest error kept, and a maximal result: put through the limits."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    task_id = LONGEST_IDS["four-byte"]
    envelope = len(Task(id=task_id, payload={"blob": ""}).message_body().encode("utf-8"))
    payload = {"blob": "é" * ((MAX_TASK_BYTES - envelope) // 2)}
    now = WIDEST_TIME
    entry = attempt_entry(999, now, now, Outcome.FAILED, "e" * MAX_ERROR_BYTES)
    item = {
        "id": task_id,
        "status": "FAILED",
        "type": "simulate",
        "payload": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        "attempts": 100,
        "maxAttempts": 100,
        "createdAt": now,
        "updatedAt": now,
        "finishedAt": now,
        "expiresAt": 99_999_999_999,
        "lastError": "e" * MAX_ERROR_BYTES,
        "result": "r" * MAX_RESULT_BYTES,
        "history": [entry] * (MAX_HISTORY_ENTRIES + 2),  # the bulk retry's cap, and a cancel's two entries
        "version": 1_000,
        "leaseOwner": "f" * 32,
        "lastMessageId": "m" * 36,
        **index_attributes(Status.FAILED, task_id, now),
    }
    wire = serialize(item)
    size = aws_limits.item_size({name: DynamoType(value) for name, value in wire.items()})
    assert size <= ITEM_MAX_BYTES, f"{size} bytes"
    dynamodb.put_item(TableName=TABLE, Item=wire)


def test_the_largest_batch_taskproc_sends_fits_every_sqs_limit(sqs: Any, queue_url: str) -> None:
    largest = Task(id="x", payload={"blob": "é" * (MAX_TASK_BYTES // 2 - 40)}).message_body()
    assert len(largest.encode("utf-8")) <= MAX_TASK_BYTES
    messages = [Outgoing(largest, delay_seconds=DELAY_MAX_SECONDS)] * MAX_BATCH_TASKS
    chunks = batch_chunks(messages)
    assert SQS_BATCH_LIMIT <= BATCH_MAX_ENTRIES and SQS_BATCH_BYTES <= MESSAGE_MAX_BYTES
    for chunk in chunks:
        entries = [
            {"Id": str(index), "MessageBody": messages[index].body, "DelaySeconds": messages[index].delay_seconds}
            for index in chunk
        ]
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        assert not answer.get("Failed")
    assert sum(len(chunk) for chunk in chunks) == MAX_BATCH_TASKS


def test_taskproc_never_asks_for_more_visibility_or_delay_than_sqs_allows() -> None:
    from chalicelib.consume.consumer import MAX_SEND_DELAY_SECONDS, _seconds
    from chalicelib.models import MAX_DELAY_SECONDS

    assert MAX_VISIBILITY_SECONDS == VISIBILITY_MAX_SECONDS
    assert _seconds(10**12) == VISIBILITY_MAX_SECONDS
    assert MAX_DELAY_SECONDS <= DELAY_MAX_SECONDS and MAX_SEND_DELAY_SECONDS <= DELAY_MAX_SECONDS


def test_a_task_holding_characters_sqs_refuses_is_queued_escaped_and_runs_on_the_same_text(
    client: Any, runtime: Any, clock: Any
) -> None:
    import hashlib

    from tests.integration.harness import Harness

    h = Harness(client, runtime, clock)
    text = "noncharacters \ufffe and \uffff, a control \x01"
    body = json.dumps({"id": "odd\uffff", "type": "checksum", "payload": {"text": text}})
    response = client.http.post("/publish", body=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.body
    delivery = h.deliver()
    assert "\uffff" not in delivery.records[0]["body"]  # escaped in the message, as JSON allows
    view = json.loads(client.http.get("/tasks/odd%EF%BF%BF").body)
    assert view["status"] == "COMPLETED"
    assert view["result"]["digest"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
