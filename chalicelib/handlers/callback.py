"""`callback`: taskproc's own type, whose attempts deliver a terminal task's outcome to its callback URL.

Published only by taskproc (chalicelib/callbacks/follow_up.py), as the task `<task id>/callback`;
a client's publish of this type is refused, since its body is signed with the stage's key. Each
attempt checks the URL against the stage's rules again (DNS may answer differently now), signs
the body afresh and POSTs it to the checked address (docs/workflows.md). A 2xx answer completes
it; any other answer, a refused connection or no answer within 10 s fails the attempt, retried
with this type's backoff; 410 Gone, or a URL the rules now refuse, fails it for good.

Its timeout is 12 s (it fits every stage's consumer function) and its lease three 4 s heartbeats
(12 s), so that a delivery gets its whole 10 s even on a stage whose lease is shorter (`local`'s is
3 s). It needs no heartbeat: the one request ends before the lease does.
"""

import json
import time
from typing import Any

from pydantic import ConfigDict, Field

from chalicelib.callbacks.delivery import DeliveryFailed, post
from chalicelib.callbacks.follow_up import CALLBACK_TYPE
from chalicelib.callbacks.signing import SIGNATURE_HEADER, CallbackSecretUnavailable, signature_header
from chalicelib.callbacks.url import CallbackRefused
from chalicelib.deferred import Model
from chalicelib.models import MAX_CALLBACK_URL_LENGTH
from chalicelib.registry import Backoff, PermanentError, TaskContext, TaskFailed, task_type

MAX_DELIVERY_SECONDS = 10.0
# Left of the attempt's deadline for recording its outcome.
MARGIN_SECONDS = 1.0
GONE = 410


class CallbackPayload(Model):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(max_length=MAX_CALLBACK_URL_LENGTH)
    delivery: dict[str, Any] = Field(description='The body: {"id", "status", "result", "lastError", "finishedAt"}.')


def body_bytes(delivery: dict[str, Any]) -> bytes:
    """The request body: the same bytes on every attempt of one delivery."""
    return json.dumps(delivery, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@task_type(
    CALLBACK_TYPE,
    payload=CallbackPayload,
    timeout_seconds=12,
    heartbeat_seconds=4,
    backoff=Backoff(base_seconds=10, max_seconds=600),
)
def callback(payload: CallbackPayload, context: TaskContext) -> dict[str, int]:
    """POST the delivery, signed; the receiver's status code is the result."""
    from chalicelib.runtime import get_runtime  # the runtime imports this package: read it when running

    rt = get_runtime()
    try:
        target = rt.callback_urls.check(payload.url)
    except CallbackRefused as refused:
        reason = f"callback.url {refused.rule}"
        raise (TaskFailed(reason) if refused.transient else PermanentError(reason)) from None
    try:
        key = rt.callback_keys.key()
    except CallbackSecretUnavailable as exc:
        raise TaskFailed(f"not signed: {exc}") from None
    seconds = min(MAX_DELIVERY_SECONDS, context.remaining_seconds() - MARGIN_SECONDS)
    if seconds <= 0:
        raise TaskFailed("no time was left in the attempt for the request")
    body = body_bytes(payload.delivery)
    # Wall time, whatever clock the stage runs on: the receiver compares it with its own.
    header = signature_header(key, int(time.time()), body)
    try:
        answer = post(target, body, {SIGNATURE_HEADER: header}, seconds)
    except DeliveryFailed as exc:
        raise TaskFailed(str(exc)) from None
    if answer.status == GONE:
        raise PermanentError("the receiver answered 410 Gone: it wants no more deliveries")
    if 300 <= answer.status < 400:
        raise TaskFailed(f"the receiver answered {answer.status}, a redirect (to {answer.location}), never followed")
    if not 200 <= answer.status < 300:
        raise TaskFailed(f"the receiver answered {answer.status}")
    return {"status": answer.status}
