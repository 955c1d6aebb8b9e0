"""`GET /stuck`: the tasks that should have moved and have not, read by a bounded Scan.

No index holds PENDING or PROCESSING tasks: keeping them in one would write the index at
every step of every task's success path (docs/operations.md, "Why PENDING and PROCESSING are
not listed"), and a stuck task is rare and looked for by an operator, never on the task's
path. So this route reads the table itself, a page at a time, and keeps two kinds:

- pending past dispatch: PENDING, and its createdAt and its notBefore (a delay, a runAt) both
  older than the dispatch bound, the queues' visibility timeout plus DISPATCH_MARGIN_SECONDS.
  A message is received within seconds; one whose first receive died comes back after the
  visibility timeout. Past both, its message is lost or held up (a paused type, a cap, a rate
  hold it back too: flow control renews the message and the task stays PENDING).
- lease expired: PROCESSING, and its lease expired without a heartbeat or a settled outcome:
  the consumer died, and the task waits for its message to come back and be taken over.

Each request reads at most SCAN_LIMIT items (one Scan call, and DynamoDB stops a Scan call at
1 MB): at most 128 RRU (1 MB at 0.5 RRU per 4 KB, eventually consistent), whatever the table
holds. A full pass over the table is the page chain its cursors walk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from chalicelib.errors import ServiceUnavailable
from chalicelib.models import DEFAULT_TYPE, Status
from chalicelib.operate.cursor import decode_cursor, encode_cursor
from chalicelib.operate.views import StuckPage, StuckTask
from chalicelib.query import QueryModel, parse_query
from chalicelib.tasks.record import iso_from_ms, ms_from_iso

if TYPE_CHECKING:
    from chalicelib.runtime import Runtime

SCAN_LIMIT = 1000
DISPATCH_MARGIN_SECONDS = 60
PENDING_PAST_DISPATCH = "pending past dispatch"
LEASE_EXPIRED = "lease expired"
FILTER = (
    "(#status = :pending AND #createdAt < :dispatchBound"
    " AND (attribute_not_exists(#notBefore) OR #notBefore < :dispatchBound))"
    " OR (#status = :processing AND #leaseExpiresAt < :nowMs)"
)
READ = ("id", "type", "status", "createdAt", "updatedAt", "notBefore", "leaseExpiresAt")


class StuckQuery(QueryModel):
    """The query of `GET /stuck`."""

    cursor: str | None = Field(
        default=None, description="The previous page's `next`, unchanged; empty for the first page."
    )


def dispatch_bound_seconds(rt: Runtime) -> int:
    """How long a PENDING task may wait for its first attempt before it is listed as stuck."""
    return rt.settings.QUEUE_VISIBILITY_TIMEOUT + DISPATCH_MARGIN_SECONDS


def list_stuck(params: Mapping[str, Sequence[str]], rt: Runtime) -> StuckPage:
    """One page of stuck tasks: a Scan of at most SCAN_LIMIT items; `next` goes on where it stopped.

    Raises:
        ValidationFailed: an unknown or repeated parameter, or a cursor this listing did not give.
        ServiceUnavailable: the table did not answer.
    """
    query = parse_query(StuckQuery, params)
    key = rt.cursor_keys.key()
    scope = f"{rt.settings.TASKS_TABLE}|stuck"
    after = decode_cursor(key, scope, query.cursor) if query.cursor else None
    now_ms = rt.store.now_ms()
    bound_ms = dispatch_bound_seconds(rt) * 1000
    request: dict[str, Any] = {
        "TableName": rt.settings.TASKS_TABLE,
        "Limit": SCAN_LIMIT,
        "FilterExpression": FILTER,
        "ProjectionExpression": ", ".join(f"#{name}" for name in READ),
        "ExpressionAttributeNames": {f"#{name}": name for name in READ},
        "ExpressionAttributeValues": {
            ":pending": {"S": Status.PENDING.value},
            ":processing": {"S": Status.PROCESSING.value},
            ":dispatchBound": {"S": iso_from_ms(now_ms - bound_ms)},
            ":nowMs": {"N": str(now_ms)},
        },
    }
    if after is not None:
        request["ExclusiveStartKey"] = {"id": {"S": after}}
    try:
        answer = rt.store.client.scan(**request)
    except (ClientError, BotoCoreError) as exc:
        raise ServiceUnavailable("the task table did not answer; try again") from exc
    last = answer.get("LastEvaluatedKey")
    return StuckPage(
        tasks=[_stuck(item, bound_ms) for item in answer.get("Items", [])],
        next=encode_cursor(key, scope, last["id"]["S"]) if last else None,
        scanned=int(answer.get("ScannedCount", 0)),
    )


def _stuck(item: dict[str, Any], bound_ms: int) -> StuckTask:
    text = {name: value["S"] for name, value in item.items() if "S" in value}
    if text["status"] == Status.PROCESSING.value:
        reason, since = LEASE_EXPIRED, iso_from_ms(int(item["leaseExpiresAt"]["N"]))
    else:
        due = max(text["createdAt"], text.get("notBefore", ""))  # one fixed ISO form: text order is time order
        reason, since = PENDING_PAST_DISPATCH, iso_from_ms(ms_from_iso(due) + bound_ms)
    return StuckTask.model_validate(
        {
            "id": text["id"],
            "type": text.get("type", DEFAULT_TYPE),
            "status": text["status"],
            "createdAt": text["createdAt"],
            "updatedAt": text.get("updatedAt", text["createdAt"]),
            "reason": reason,
            "since": since,
        }
    )
