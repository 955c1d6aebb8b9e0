"""The workflow item, in the task table, and the count of its children's ends, each exactly once.

The item's key is `workflow\\x1f<workflow id>`: a task id may not hold a control character
(models.TASK_ID_RULE), so no task can ever have it. It carries no status and none of the listing
index's keys, so it is never listed, counted in `GET /stats` or acquired as a task. The workflow
is not a task: no message ever names it.

    id              "workflow\\x1f<id>"
    workflowId      the workflow's id
    children        [child id, ...] in the order given (the GET answer and `then`'s order)
    onChildFailure  "fail" | "continue"
    then            {"type", "payload": JSON text}
    callback        {"url"}, when given
    createdAt       ISO 8601
    ended           {"<n>": {"s": status, "v": version}}: child n (from 1) ended in status s, as the
                    child's item stood at version v
    refused         {"reason", "at"}, when a child's id turned out to be another task's after the item
                    was written (service.py): that child can never be counted, so the workflow is FAILED

Counting exactly. A child's end is recorded by one UpdateItem,

    SET ended.<n> = {"s": <status>, "v": <version>}
    IF attribute_exists(id) AND (attribute_not_exists(ended.<n>) OR ended.<n>.v < <version>)

and every figure (how many children ended, in which status, whether the last has) is read from
the map's entries, never from a counter that is added to. So a repeat cannot count twice: the
follow-up that writes it runs after the child's terminal write, and again on every delivery
that finds the child terminal (a lost answer, a duplicate message, the dead-letter handler); each
run writes the same entry for the same version, which the condition refuses and which would change
nothing if it were accepted. A child an operator retries ends again at a higher version (every
write to a task item adds one to `version`), so its new end replaces the old, and a late run of
the old end's follow-up (a slow consumer) is refused as older. Two children ending in the same
millisecond write two different entries; DynamoDB applies writes to one item one after the
other, and each answer (ReturnValues ALL_NEW) is the item after that write, so the later of the
two sees both. A refused write answers the item as it is (ALL_OLD on the refusal), and the
follow-up decides on it all the same: a run that died after its write and before `then` was
published is repeated by the message that comes back, and publishes it. Nothing is missed
because the follow-up raises when it cannot write, and the consumer then lets the child's
message come back (chalicelib/consume/terminal.py).

An operator's retry of a child takes its end out of the count (`uncount`): REMOVE ended.<n> IF
ended.<n>.v = <the version it retried>. If the retried run has already ended again (a higher
version), the condition keeps its entry.

Cost. Each child's end is one write on the workflow item, and a write costs one write unit per
KB of the item (the larger of before and after): a workflow of 1,000 children with ids of 20
bytes is about 45 KB, so about 45 WRU per child (the map grows with the ends); with ids of 256
bytes, about 290. A repeat costs a refused write of the same size. DynamoDB serves one item from
one partition, at most 1,000 WCU a second: 1,000 children of a 45 KB workflow ending together are
45,000 WCU, about 45 seconds of that item's partition, over which DynamoDB throttles and
botocore retries (the `standard` mode: its attempts with backoff; a write that still fails raises
StoreError, and the child's message comes back to count it later). The fan-in is late by that
long, and never wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.errors import StoreError
from chalicelib.models import Status
from chalicelib.tasks.record import iso_from_ms
from chalicelib.tasks.table import ConditionFailed, TaskTable, deserialize
from chalicelib.workflows.definition import Workflow

if TYPE_CHECKING:
    from chalicelib.runtime import Runtime

KEY_PREFIX = "workflow\x1f"
KIND = "workflow"
# BatchGetItem's most keys a request; and how often unprocessed keys are asked for again.
BATCH_KEYS = 100
BATCH_ROUNDS = 5
READERS = 16


@dataclass(frozen=True)
class Ended:
    status: Status
    version: int


@dataclass(frozen=True)
class Refusal:
    """Why and when a workflow was ended without its fan-in: a child's id is another task's."""

    reason: str
    at: str


@dataclass(frozen=True)
class WorkflowItem:
    """The workflow as its item stands."""

    id: str
    children: tuple[str, ...]
    on_child_failure: str
    then_type: str
    then_payload: dict[str, Any]
    callback: str | None
    created_at: str
    ended: dict[int, Ended]
    refused: Refusal | None = None

    @property
    def all_ended(self) -> bool:
        return len(self.ended) >= len(self.children)

    def ended_in(self, status: Status) -> list[int]:
        """The positions of the children that ended in `status`, in order."""
        return sorted(n for n, end in self.ended.items() if end.status is status)

    def unfinished(self) -> list[str]:
        """The ids of the children whose end is not counted, in order."""
        return [child for n, child in enumerate(self.children, 1) if n not in self.ended]

    def same_definition(self, workflow: Workflow) -> bool:
        return (
            self.children == tuple(task.id for task in workflow.children)
            and self.then_type == workflow.then_type
            and self.then_payload == workflow.then_payload
            and self.on_child_failure == workflow.on_child_failure
            and self.callback == workflow.callback
        )


def item_key(workflow_id: str) -> str:
    return KEY_PREFIX + workflow_id


def workflow_from_item(item: dict[str, Any]) -> WorkflowItem:
    return WorkflowItem(
        id=item["workflowId"],
        children=tuple(item["children"]),
        on_child_failure=item["onChildFailure"],
        then_type=item["then"]["type"],
        then_payload=json.loads(item["then"]["payload"]),
        callback=(item.get("callback") or {}).get("url"),
        created_at=item["createdAt"],
        ended={int(n): Ended(Status(end["s"]), int(end["v"])) for n, end in (item.get("ended") or {}).items()},
        refused=Refusal(item["refused"]["reason"], item["refused"]["at"]) if item.get("refused") else None,
    )


class WorkflowStore(TaskTable):
    """Workflow items in the task table: created once, their children's ends counted once each."""

    def create(self, workflow: Workflow) -> tuple[WorkflowItem, bool]:
        """Store the workflow unless its id exists; the item as stored and whether this call stored it."""
        item: dict[str, Any] = {
            "id": item_key(workflow.id),
            "kind": KIND,
            "workflowId": workflow.id,
            "children": [task.id for task in workflow.children],
            "onChildFailure": workflow.on_child_failure,
            "then": {
                "type": workflow.then_type,
                "payload": json.dumps(workflow.then_payload, ensure_ascii=False, separators=(",", ":")),
            },
            "createdAt": iso_from_ms(self.now_ms()),
            "ended": {},
        }
        if workflow.callback is not None:
            item["callback"] = {"url": workflow.callback}
        old = self._put_new(item)
        return workflow_from_item(old if old is not None else item), old is None

    def read(self, workflow_id: str) -> WorkflowItem | None:
        """The workflow as it stands (a consistent read), or None."""
        item = self.get_item(item_key(workflow_id))
        return workflow_from_item(item) if item else None

    def count_end(self, workflow_id: str, child: int, status: Status, version: int) -> WorkflowItem | None:
        """Record that child `child` ended in `status` at `version`, unless that end (or a later) is counted.

        Returns the workflow after the write, or as it stood when the write was refused; None when there
        is no such workflow.

        Raises:
            StoreError: the table did not answer; the end may be uncounted.
        """
        names = {"#id": "id", "#ended": "ended", "#n": str(child), "#v": "v"}
        try:
            response = self._call(
                self._client.update_item,
                TableName=self._table,
                Key=self._key(item_key(workflow_id)),
                UpdateExpression="SET #ended.#n = :end",
                ConditionExpression="attribute_exists(#id) AND (attribute_not_exists(#ended.#n) OR #ended.#n.#v < :v)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=self._values({":end": {"s": status.value, "v": version}, ":v": version}),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as refused:
            return workflow_from_item(refused.old) if refused.old else None
        item = deserialize(response.get("Attributes"))
        return workflow_from_item(item) if item else None

    def refuse(self, workflow_id: str, reason: str) -> WorkflowItem | None:
        """Mark the workflow refused (FAILED, its `then` never run), unless it is already: the first reason
        stays. The workflow after the write; None when there is no such workflow.

        Raises:
            StoreError: the table did not answer; the workflow may be unmarked.
        """
        refusal = {"reason": reason, "at": iso_from_ms(self.now_ms())}
        try:
            response = self._call(
                self._client.update_item,
                TableName=self._table,
                Key=self._key(item_key(workflow_id)),
                UpdateExpression="SET #refused = if_not_exists(#refused, :refused)",
                ConditionExpression="attribute_exists(#id)",
                ExpressionAttributeNames={"#id": "id", "#refused": "refused"},
                ExpressionAttributeValues=self._values({":refused": refusal}),
                ReturnValues="ALL_NEW",
            )
        except ConditionFailed:
            return None
        item = deserialize(response.get("Attributes"))
        return workflow_from_item(item) if item else None

    def uncount(self, workflow_id: str, child: int, version: int) -> bool:
        """Take child `child`'s end at `version` out of the count (an operator retried it); False when the
        count holds another end of it (a later one), or none.

        Raises:
            StoreError: the table did not answer.
        """
        try:
            self._call(
                self._client.update_item,
                TableName=self._table,
                Key=self._key(item_key(workflow_id)),
                UpdateExpression="REMOVE #ended.#n",
                ConditionExpression="#ended.#n.#v = :v",
                ExpressionAttributeNames={"#ended": "ended", "#n": str(child), "#v": "v"},
                ExpressionAttributeValues=self._values({":v": version}),
            )
        except ConditionFailed:
            return False
        return True

    def items(self, task_ids: Iterable[str], attributes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """The task items of `task_ids` that exist, with `attributes` (and `id`), by id; read side by side,
        BatchGetItem's 100 keys at a time, consistently.

        Raises:
            StoreError: a request failed, or keys stayed unprocessed after BATCH_ROUNDS asks.
        """
        ids = list(dict.fromkeys(task_ids))
        chunks = [ids[start : start + BATCH_KEYS] for start in range(0, len(ids), BATCH_KEYS)]
        projection = ", ".join(f"#a{i}" for i in range(len(attributes) + 1))
        names = {f"#a{i}": name for i, name in enumerate(("id", *attributes))}

        def read(chunk: list[str]) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            keys: dict[str, Any] = {
                self._table: {
                    "Keys": [self._key(task_id) for task_id in chunk],
                    "ProjectionExpression": projection,
                    "ExpressionAttributeNames": names,
                    "ConsistentRead": True,
                }
            }
            for _ in range(BATCH_ROUNDS):
                response = self._call(self._client.batch_get_item, RequestItems=keys)
                found += [deserialize(item) or {} for item in response.get("Responses", {}).get(self._table, [])]
                keys = response.get("UnprocessedKeys") or {}
                if not keys:
                    return found
            raise StoreError(f"DynamoDB left {len(keys[self._table]['Keys'])} keys unread after {BATCH_ROUNDS} asks")

        if not chunks:
            return {}
        with ThreadPoolExecutor(max_workers=min(READERS, len(chunks))) as pool:
            return {item["id"]: item for found in pool.map(read, chunks) for item in found}


def workflow_store(rt: Runtime) -> WorkflowStore:
    """The workflow items of the stage's task table, on the task store's client and clock."""
    return WorkflowStore(rt.store.client, rt.settings.TASKS_TABLE, clock=lambda: rt.store.now_ms() / 1000)
