"""Make moto refuse what AWS refuses: DynamoDB's key and item sizes, SQS's message sizes.

An offline test must fail where AWS would, or a write that AWS refuses is found
on AWS, as a task cycling through the dead-letter queue. moto 5.2.5 checks some
of the limits taskproc touches and not others:

- DynamoDB key sizes (2,048 bytes for a partition key, 1,024 for a sort key, on
  the table's key and on every index key an item carries): moto checks them when
  an item is put (PutItem, BatchWriteItem, a transaction's Put), not when one is
  updated (UpdateItem, a transaction's Update), where taskproc writes the listing
  index's keys. Here the item as the update would leave it is checked.
- DynamoDB item size (400 KB of 1,024 bytes): moto counts as each attribute is
  set, to 405,000 bytes, without the overheads of lists and maps and counting an
  attribute being replaced twice; so it refuses some updates DynamoDB takes and
  takes some items DynamoDB refuses. Here DynamoDB's own count ("Item sizes and
  formats" in the developer guide) is checked on every write, and moto's is off.
- BatchWriteItem: moto writes the items before a refused one; DynamoDB refuses
  the whole batch. Here the batch is checked before anything is written.
- A refused write inside TransactWriteItems cancels the transaction with the
  reason `ValidationError`, as DynamoDB does; moto would answer a bare
  ValidationException.
- SQS message size: moto compares the body's characters with the queue's
  MaximumMessageSize; SQS counts bytes of UTF-8, and the message attributes'
  names, types and values too. The same for SendMessageBatch's total of 1 MiB.
- SQS message contents: SQS refuses a message with a character outside XML's
  (U+FFFE and U+FFFF, most C0 controls, lone surrogates) in its body or its
  attributes; moto takes any. Here they are refused with `InvalidMessageContents`.
- SendMessageBatch's 10 entries, DelaySeconds up to 900 and a visibility timeout
  up to 12 hours moto enforces already (tests/local/test_aws_limits.py checks
  that it still does); nothing is patched for them.

Refusals carry AWS's error codes and moto's own messages for them. No library
does this: moto is the one emulator that runs inside this stack's processes, and
it checks these limits in some calls only; LocalStack and DynamoDB Local are
separate servers (a container, a JVM), not packages of this stack. `install`
patches moto's classes once per process, so the embedded endpoint
(`local.aws.EmbeddedAws.start`) and the tests' in-process moto
(tests/conftest.py) both carry the limits. docs/offline.md lists each limit and
where in AWS's documentation it comes from.
"""

from __future__ import annotations

import base64
import copy
import functools
import inspect
import math
import re
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from local.atomic_dynamodb import atomically

# DynamoDB, "Constraints" in the developer guide (its KB are 1,024 bytes).
PARTITION_KEY_MAX_BYTES = 2048
SORT_KEY_MAX_BYTES = 1024
ITEM_MAX_BYTES = 400 * 1024
# SQS, the API reference (SendMessage, SendMessageBatch, CreateQueue's MaximumMessageSize).
MESSAGE_MAX_BYTES = 1_048_576  # the largest MaximumMessageSize, and a batch's messages together
BATCH_MAX_ENTRIES = 10
DELAY_MAX_SECONDS = 900
VISIBILITY_MAX_SECONDS = 43_200

# The characters a message may carry (XML's); SQS refuses any other.
_NOT_IN_A_MESSAGE = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_installed = False
# How many transactions this thread is inside (moto runs a transaction's writes on its thread).
_transactions = threading.local()


class ValidationError(Exception):
    """A write of a transaction breaks a limit: moto names the cancellation reason after this class."""


def install() -> None:
    """Patch moto's DynamoDB and SQS to refuse what AWS refuses (once per process).

    Raises:
        RuntimeError: moto no longer has a piece this relies on.
    """
    global _installed
    if _installed:
        return
    _limit_dynamodb()
    _limit_sqs()
    _installed = True


# --- DynamoDB ---------------------------------------------------------------


def value_size(value: Any) -> int:
    """The bytes DynamoDB counts for one attribute value (a moto DynamoType), its name aside."""
    kind, raw = value.type, value.value
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        return _number_size(raw)
    if kind == "B":
        return _binary_size(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(member.encode("utf-8")) for member in raw)
    if kind == "NS":
        return sum(_number_size(member) for member in raw)
    if kind == "BS":
        return sum(_binary_size(member) for member in raw)
    if kind == "L":
        return 3 + sum(value_size(element) + 1 for element in raw)
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + value_size(element) + 1 for name, element in raw.items())
    raise ValueError(f"not a DynamoDB attribute type: {kind!r}")


def item_size(attributes: Mapping[str, Any]) -> int:
    """The bytes DynamoDB counts for an item: each attribute's name in UTF-8 and its value."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in attributes.items())


def _number_size(text: str) -> int:
    # One byte per two significant digits, and one more; zeros at either end do not count.
    digits = len(Decimal(text).normalize().as_tuple().digits)
    return math.ceil(digits / 2) + 1


def _binary_size(raw: bytes | str) -> int:
    # The wire carries binary as base64; DynamoDB counts the raw bytes.
    return len(raw) if isinstance(raw, bytes) else len(base64.b64decode(raw))


def _refusal(table: Any, attributes: Mapping[str, Any], too_large: type[Exception]) -> Exception | None:
    """The error DynamoDB answers for writing `attributes` (moto DynamoTypes) to `table`, or None."""
    from moto.dynamodb.exceptions import HashKeyTooLong, RangeKeyTooLong

    for name in table.hash_key_names:  # the table's and every global index's
        if name in attributes and value_size(attributes[name]) > PARTITION_KEY_MAX_BYTES:
            return HashKeyTooLong()
    for name in table.range_key_names:
        if name in attributes and value_size(attributes[name]) > SORT_KEY_MAX_BYTES:
            return RangeKeyTooLong()
    if item_size(attributes) > ITEM_MAX_BYTES:
        return too_large()
    return None


def _refuse_beyond_limits(table: Any, attributes: Mapping[str, Any], too_large: type[Exception]) -> None:
    refusal = _refusal(table, attributes, too_large)
    if refusal is None:
        return
    if getattr(_transactions, "depth", 0):
        raise ValidationError(refusal.message)  # type: ignore[attr-defined]
    raise refusal


def _typed(item: Mapping[str, Any]) -> dict[str, Any]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return {name: DynamoType(value) for name, value in item.items()}


def _limit_dynamodb() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    for owner, name in [
        (Table, "_validate_key_sizes"),
        (DynamoDBBackend, "update_item"),
        (DynamoDBBackend, "transact_write_items"),
        (DynamoHandler, "batch_write_item"),
    ]:
        if not callable(getattr(owner, name, None)):
            raise RuntimeError(f"moto's {owner.__name__} has no {name}(): local/aws_limits.py needs updating")

    def check_put(self: Any, item_attrs: dict[str, Any]) -> None:
        """Every put runs this (moto's own key-size check, which it replaces) before its condition."""
        from moto.dynamodb.exceptions import ItemSizeTooLarge

        _refuse_beyond_limits(self, _typed(item_attrs), ItemSizeTooLarge)

    Table._validate_key_sizes = check_put  # type: ignore[method-assign]
    # This module counts item sizes as DynamoDB does; moto's count, made as each attribute is set, is off.
    LimitedSizeDict.__setitem__ = dict.__setitem__  # type: ignore[assignment,method-assign]

    update_item = DynamoDBBackend.update_item
    update_signature = inspect.signature(update_item)

    @functools.wraps(update_item)
    def checked_update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        from moto.dynamodb.exceptions import ItemSizeToUpdateTooLarge

        call = update_signature.bind(self, *args, **kwargs)
        call.apply_defaults()
        table = self.get_table(call.arguments["table_name"])
        after = _item_after_update(self, table, call.arguments)
        if after is not None:
            _refuse_beyond_limits(table, after.attrs, ItemSizeToUpdateTooLarge)
        return update_item(self, *args, **kwargs)

    # Under the write lock: the item checked is the item updated.
    DynamoDBBackend.update_item = atomically(checked_update_item)  # type: ignore[method-assign]

    transact_write_items = DynamoDBBackend.transact_write_items

    @functools.wraps(transact_write_items)
    def transaction(self: Any, *args: Any, **kwargs: Any) -> Any:
        _transactions.depth = getattr(_transactions, "depth", 0) + 1
        try:
            return transact_write_items(self, *args, **kwargs)
        finally:
            _transactions.depth -= 1

    DynamoDBBackend.transact_write_items = transaction  # type: ignore[method-assign]

    batch_write_item = DynamoHandler.batch_write_item

    @functools.wraps(batch_write_item)
    def whole_batch_checked(self: Any) -> Any:
        from moto.dynamodb.exceptions import ItemSizeTooLarge

        for table_name, requests in self.body.get("RequestItems", {}).items():
            table = self.dynamodb_backend.get_table(table_name)
            for request in requests:
                item = request.get("PutRequest", {}).get("Item")
                if item:
                    _refuse_beyond_limits(table, _typed(item), ItemSizeTooLarge)
        return batch_write_item(self)

    DynamoHandler.batch_write_item = whole_batch_checked  # type: ignore[method-assign]


def _item_after_update(backend: Any, table: Any, arguments: dict[str, Any]) -> Any:
    """The item (a moto Item) as moto's update_item would leave it, computed on a copy; None
    where moto refuses the update itself (a failed condition, an expression the item does not
    fit), so that its own answer comes first, as DynamoDB's does."""
    from moto.dynamodb.comparisons import create_condition_expression_parser, get_expected
    from moto.dynamodb.exceptions import DynamodbException
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.parsing.executors import UpdateExpressionExecutor
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser
    from moto.dynamodb.parsing.validators import UpdateExpressionValidator

    names = arguments["expression_attribute_names"]
    values = arguments["expression_attribute_values"]
    try:
        hash_value, range_value = backend.get_keys_value(table, arguments["key"])
        current = table.get_item(hash_value, range_value)
        condition = create_condition_expression_parser(arguments["condition_expression"], names, values).parse()
        if not (get_expected(arguments["expected"] or {}).expr(current) and condition.expr(current)):
            return None
        after = copy.deepcopy(current) if current is not None else Item(hash_value, range_value, arguments["key"])
        if arguments["update_expression"]:
            tree = UpdateExpressionParser.make(arguments["update_expression"])
            validated = UpdateExpressionValidator(
                tree, expression_attribute_names=names, expression_attribute_values=values, item=after, table=table
            ).validate()
            validated.normalize()
            UpdateExpressionExecutor(validated, after, names).execute()
        elif arguments["attribute_updates"]:
            after.update_with_attribute_updates(arguments["attribute_updates"])
    except DynamodbException:
        return None
    return after


# --- SQS --------------------------------------------------------------------


def message_size(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> int:
    """The bytes SQS counts for a message: its body in UTF-8, and each attribute's name, type and value."""
    size = len(body.encode("utf-8"))
    for name, attribute in attributes.items():
        size += len(name.encode("utf-8")) + len(str(attribute.get("DataType", "")).encode("utf-8"))
        if "StringValue" in attribute:
            size += len(str(attribute["StringValue"]).encode("utf-8"))
        if "BinaryValue" in attribute:
            size += _binary_size(attribute["BinaryValue"])
    return size


def _unsendable_character(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> Exception | None:
    """SQS's refusal of a message with a character outside the allowed set, or None."""
    from moto.sqs.exceptions import SQSException

    texts = [body, *(str(attribute.get("StringValue", "")) for attribute in attributes.values())]
    for text in texts:
        found = _NOT_IN_A_MESSAGE.search(text)
        if found:
            return SQSException(
                "InvalidMessageContents",
                f"Invalid binary character '#x{ord(found.group()):X}' was found in the message body, the set of "
                "allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
            )
    return None


def _too_long(maximum: int) -> Exception:
    from moto.sqs.exceptions import InvalidParameterValue

    return InvalidParameterValue(
        f"One or more parameters are invalid. Reason: Message must be shorter than {maximum} bytes."
    )


def _limit_sqs() -> None:
    from moto.sqs.exceptions import BatchRequestTooLong
    from moto.sqs.responses import SQSResponse

    for name in ("send_message", "send_message_batch"):
        if not callable(getattr(SQSResponse, name, None)):
            raise RuntimeError(f"moto's SQSResponse has no {name}(): local/aws_limits.py needs updating")
    # The request is checked before moto's backend sees it (local/embedded_sqs.py replaces the backend's send).
    send_message = SQSResponse.send_message
    send_message_batch = SQSResponse.send_message_batch

    @functools.wraps(send_message)
    def checked_send_message(self: Any) -> Any:
        body = self._get_param("MessageBody")
        if isinstance(body, str):
            attributes = self._get_param("MessageAttributes") or {}
            maximum = int(self.sqs_backend.get_queue(self._get_queue_name()).maximum_message_size)
            if message_size(body, attributes) > maximum:
                raise _too_long(maximum)
            refusal = _unsendable_character(body, attributes)
            if refusal is not None:
                raise refusal
        return send_message(self)

    @functools.wraps(send_message_batch)
    def checked_send_message_batch(self: Any) -> Any:
        entries = self._get_param("Entries") or []
        sizes = [
            message_size(entry.get("MessageBody") or "", entry.get("MessageAttributes") or {}) for entry in entries
        ]
        if sum(sizes) > MESSAGE_MAX_BYTES:
            raise BatchRequestTooLong(sum(sizes))
        if sizes:
            maximum = int(self.sqs_backend.get_queue(self._get_queue_name()).maximum_message_size)
            if max(sizes) > maximum:
                raise _too_long(maximum)
        for entry in entries:
            refusal = _unsendable_character(entry.get("MessageBody") or "", entry.get("MessageAttributes") or {})
            if refusal is not None:
                raise refusal
        return send_message_batch(self)

    SQSResponse.send_message = checked_send_message  # type: ignore[method-assign]
    SQSResponse.send_message_batch = checked_send_message_batch  # type: ignore[method-assign]
