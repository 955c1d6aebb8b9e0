"""A fake taskproc API over real HTTP on loopback: the contract's routes, in memory.

Publish (one, or batches, with chains and callbacks), workflows, the long poll of
`GET /tasks/{id}?waitSeconds=`, tags, the operator routes and the schedules' routes, by their
contracts (docs/api.md, docs/workflows.md and issues 20 to 22); `GET /stats`'s counts of every
status and its `throughput`, and `GET /stuck`, by issue 23's. Throughput is counted from the
tasks on the fake's clock unless a test sets `throughput` (see `throughput_document`);
`without_throughput` and `without_stuck` play an older server. `fail_next` answers the next
requests with the given statuses, once each, for the retries' tests; `fail_with` answers every
request with one.

It can also play a deployed stage's gatekeeper: with `credentials`, the operator routes
answer 403 unless the request carries a SigV4 signature that botocore, recomputing it
from those credentials, finds identical; with `api_key`, the other routes want `x-api-key`.
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from taskproc_client.signing import is_operator_route

LISTED = ("FAILED", "RETRYING", "CANCELLED")
STATUSES = ("PENDING", "PROCESSING", *LISTED, "COMPLETED")
# The counts that come from the metrics, not the index: approximate.
APPROXIMATE = ("PENDING", "PROCESSING", "COMPLETED")
KINDS = ("completed", "failed", "retried", "accepted")
# The fake clock's first moment: every stamp falls in the minute that starts here.
EPOCH = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
_clock = itertools.count()


def _now() -> str:
    # Strictly increasing, so "most recently updated first" has one answer.
    return _iso(EPOCH + timedelta(milliseconds=next(_clock)))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def latency(p50: float | None = None, p95: float | None = None, p99: float | None = None) -> dict[str, Any]:
    """One type's latency figures, the same for attempts and end to end unless changed after."""
    figures = {"p50": p50, "p95": p95, "p99": p99}
    return {"attemptMs": dict(figures), "endToEndMs": dict(figures)}


def throughput_document(
    per_minute: dict[str, dict[str, list[float]]],
    latencies: dict[str, dict[str, Any]] | None = None,
    end: datetime = EPOCH,
) -> dict[str, Any]:
    """`/stats`'s `throughput`: each type's per-minute series (oldest first, the last bucket the
    minute of `end`), each kind missing given as zeros, `total` their sum; per hour, the hour's sum."""
    series: dict[str, dict[str, list[float]]] = {}
    for name, kinds in per_minute.items():
        series[name] = {kind: [0.0] * (60 - len(kinds.get(kind, []))) + list(kinds.get(kind, [])) for kind in KINDS}
    total = {kind: [0.0] * 60 for kind in KINDS}
    for kinds in series.values():
        for kind in KINDS:
            total[kind] = [a + b for a, b in zip(total[kind], kinds[kind], strict=True)]
    series["total"] = total
    hourly = {name: {kind: [0.0] * 23 + [sum(v)] for kind, v in kinds.items()} for name, kinds in series.items()}
    start = end.replace(second=0, microsecond=0) - timedelta(minutes=59)
    hour_start = end.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    figures = {"total": latency(), **{name: latency() for name in per_minute}} | (latencies or {})
    return {
        "perMinute": {"start": _iso(start), "stepSeconds": 60, "series": series},
        "perHour": {"start": _iso(hour_start), "stepSeconds": 3600, "series": hourly},
        "latency": figures,
    }


def type_entry(name: str, options: dict[str, Any] | None = None, running: int | None = None) -> dict[str, Any]:
    """A task type as GET /types lists it, running unpaused."""
    return {
        "name": name,
        "paused": False,
        "options": options or {},
        "running": running,
        "pausedBy": None,
        "pausedAt": None,
        "effectiveBy": None,
    }


def _default_types() -> dict[str, dict[str, Any]]:
    return {"checksum": type_entry("checksum"), "simulate": type_entry("simulate")}


def _error(code: str, message: str, details: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


@dataclass
class Seen:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeApi:
    """The state and the rules; `server` serves it."""

    credentials: Credentials | None = None
    region: str = "us-east-1"
    api_key: str | None = None
    fail_with: int | None = None
    fail_next: list[int] = field(default_factory=list)
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    types: dict[str, dict[str, Any]] = field(default_factory=_default_types)
    type_history: list[dict[str, Any]] = field(default_factory=list)
    workflows: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> the body POSTed
    throughput: dict[str, Any] | None = None  # None: counted from the tasks
    latencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    unknown_counts: set[str] = field(default_factory=set)  # statuses whose count /stats gives as null
    without_throughput: bool = False
    stuck: list[dict[str, Any]] = field(default_factory=list)
    without_stuck: bool = False
    stuck_page: int = 50  # stuck tasks a page of GET /stuck holds
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)  # a long poll waits on it for a task to end

    def finish(self, task_id: str, status: str, result: Any = None, last_error: str | None = None) -> None:
        """End a task, as a consumer would, and wake the long polls waiting on it."""
        with self.changed:
            task = self.tasks[task_id]
            task.update(status=status, result=result, lastError=last_error, finishedAt=_now(), updatedAt=_now())
            self.changed.notify_all()

    def add(self, task_id: str, status: str, last_error: str | None = None, attempts: int = 3) -> dict[str, Any]:
        """A task as if it had run `attempts` attempts and reached `status`."""
        stamp = _now()
        history = [
            {
                "kind": "attempt",
                "attempt": n,
                "startedAt": stamp,
                "finishedAt": stamp,
                "outcome": "failed" if last_error else "succeeded",
                "error": last_error,
            }
            for n in range(1, attempts + 1)
        ]
        task = {
            "id": task_id,
            "type": "simulate",
            "status": status,
            "attempts": attempts,
            "maxAttempts": 3,
            "payload": {"message": "ERROR"} if last_error else {},
            "result": None,
            "createdAt": stamp,
            "updatedAt": stamp,
            "finishedAt": stamp if status in ("FAILED", "COMPLETED", "CANCELLED") else None,
            "nextAttemptAt": None,
            "notBefore": None,
            "lastError": last_error,
            "cancelRequested": False,
            "history": history,
        }
        self.tasks[task_id] = task
        return task

    # -- the routes ------------------------------------------------------------------------------

    def answer(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        path, query = parts.path, dict(parse_qsl(parts.query))
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            return 400, _error("invalid_json", "the body is not JSON")
        with self.lock:
            self.seen.append(Seen(method, raw_path, headers, body))
            refusal = self._gate(method, raw_path, headers, raw_body)
            if refusal:
                return refusal
            if self.fail_next:
                status = self.fail_next.pop(0)
                return status, _error("fake_failure", f"the fake answers {status} once")
            if self.fail_with:
                return self.fail_with, _error("fake_failure", f"the fake answers {self.fail_with}")
            return self._route(method, path, query, body)

    def _gate(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any] | None:
        if is_operator_route(method, urlsplit(raw_path).path):
            if self.credentials is not None:
                reason = self.signature_problem(method, raw_path, headers, raw_body)
                if reason:
                    return 403, {"message": reason}
        elif self.api_key is not None and headers.get("x-api-key") != self.api_key:
            return 403, {"message": "Forbidden"}
        return None

    def signature_problem(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> str | None:
        """Why the request's SigV4 signature is not the one these credentials make, or None when it is."""
        assert self.credentials is not None
        match = _AUTHORIZATION.match(headers.get("authorization", ""))
        if not match:
            return "Missing Authentication Token"
        if match["key"] != self.credentials.access_key:
            return "The security token included in the request is invalid."
        if (match["region"], match["service"]) != (self.region, "execute-api"):
            return f"Credential should be scoped to a valid region and service: {match['region']}/{match['service']}"
        signed = match["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return "the host and x-amz-date headers must be signed"
        if self.credentials.token and headers.get("x-amz-security-token") != self.credentials.token:
            return "The security token included in the request is invalid."
        stamp = headers.get("x-amz-date", "")
        if not stamp.startswith(match["date"]):
            return "the date of the credential scope is not the request's"
        try:
            sent_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "x-amz-date is not a SigV4 timestamp"
        if abs((datetime.now(UTC) - sent_at).total_seconds()) > 300:
            return "Signature expired"
        request = AWSRequest(
            method=method,
            url=f"http://{headers['host']}{raw_path}",
            data=raw_body,
            headers={name: headers.get(name, "") for name in signed},
        )
        request.context["timestamp"] = stamp
        signer = SigV4Auth(self.credentials, "execute-api", self.region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, match["signature"]):
            return "The request signature we calculated does not match the signature you provided."
        return None

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if (method, path) == ("POST", "/publish"):
            return self._publish(body)
        if (method, path) == ("POST", "/publish/batch"):
            return self._batch(body)
        if (method, path) == ("POST", "/workflows"):
            return self._create_workflow(body)
        flow = re.fullmatch(r"/workflows/([^/]+)", path)
        if method == "GET" and flow:
            known = self.workflows.get(unquote(flow[1]))
            if known is None:
                return 404, _error("not_found", f"no workflow with id {unquote(flow[1])!r}")
            return 200, self._workflow_view(known)
        if path == "/schedules" or path.startswith("/schedules/"):
            return self._schedule_route(method, path, query, body)
        if (method, path) == ("GET", "/stats"):
            return 200, self._stats()
        if (method, path) == ("GET", "/stuck"):
            # API Gateway's answer, and `chalice local`'s, to a route the API does not have.
            return (403, {"message": "Missing Authentication Token"}) if self.without_stuck else self._stuck(query)
        if (method, path) == ("GET", "/tasks"):
            return self._list(query)
        if (method, path) == ("POST", "/retries"):
            return self._retries(body)
        if (method, path) == ("GET", "/types"):
            return 200, {"types": [self.types[name] for name in sorted(self.types)]}
        typed = re.fullmatch(r"/types/([^/]+)(?:/(pause|resume))?", path)
        if typed:
            return self._type(method, unquote(typed[1]), typed[2])
        match = re.fullmatch(r"/tasks/([^/]+)(?:/(retry|cancel))?", path)
        if match:
            task = self.tasks.get(unquote(match[1]))
            if task is None:
                return 404, _error("not_found", f"no task with id {unquote(match[1])!r}")
            if method == "GET" and match[2] is None:
                return self._get(task, query)
            if method == "POST" and match[2] == "retry":
                return self._retry(task)
            if method == "POST" and match[2] == "cancel":
                return self._cancel(task)
        return 404, _error("not_found", f"no route {method} {path}")

    def _type(self, method: str, name: str, verb: str | None) -> tuple[int, Any]:
        entry = self.types.get(name)
        if entry is None:
            known = ", ".join(sorted(self.types))
            return 404, _error(
                "not_found", f"no task type is named {name!r}", [{"field": "type", "message": f"one of {known}"}]
            )
        if method == "GET" and verb is None:
            mine = [{k: v for k, v in c.items() if k != "type"} for c in self.type_history if c["type"] == name]
            return 200, {**entry, "history": mine}
        if method != "POST" or verb is None:
            return 404, _error("not_found", f"no route {method} /types/{name}")
        changed = entry["paused"] != (verb == "pause")
        at = _now()
        self.type_history.append({"type": name, "action": verb, "by": "anonymous", "at": at, "changed": changed})
        if changed and verb == "pause":
            entry.update(paused=True, pausedBy="anonymous", pausedAt=at, effectiveBy=at)
        elif changed:
            entry.update(paused=False, pausedBy=None, pausedAt=None, effectiveBy=None)
        return 200, {**entry, "changed": changed, "message": f"{name} {verb}d" if changed else "nothing changed"}

    def _publish(self, body: Any) -> tuple[int, Any]:
        problem = _publish_problem(body, self.types)
        if problem:
            return 400, {"error": problem}
        if body["id"] in self.tasks:
            return 201, {"id": body["id"], "status": self.tasks[body["id"]]["status"], "duplicate": True}
        task = self.add(body["id"], "PENDING", attempts=0)
        task["payload"] = body.get("payload", {})
        task["type"] = body.get("type", "simulate")
        task["tags"] = body.get("tags", [])
        if body.get("then"):
            steps = enumerate(body["then"], start=1)
            task["then"] = [
                {"id": f"{body['id']}/then/{n}", "type": step["type"], "state": "waiting"} for n, step in steps
            ]
        if body.get("callback"):
            task.update(callback=body["callback"], callbackTask=f"{body['id']}/callback")
        return 201, {"id": body["id"], "status": "PENDING", "duplicate": False}

    def _create_workflow(self, body: Any) -> tuple[int, Any]:
        """POST /workflows: a repeat of the same body answers as the first; another body under its id is a 409."""
        children = body.get("children") if isinstance(body, dict) else None
        if not isinstance(children, list) or not 1 <= len(children) <= 1000:
            return 400, _error("validation_error", "bad workflow", [{"field": "children", "message": "1 to 1,000"}])
        if not isinstance(body.get("then"), dict) or body["then"].get("type") not in self.types:
            return 400, _error("validation_error", "bad workflow", [{"field": "then.type", "message": "a type"}])
        known = self.workflows.get(body["id"])
        if known is not None and known != body:
            return 409, _error("conflict", f"workflow {body['id']!r} exists with another definition")
        if known is None:
            self.workflows[body["id"]] = body
            for n, child in enumerate(children, start=1):
                task = self.add(child.get("id") or f"{body['id']}/{n}", "PENDING", attempts=0)
                task.update(type=child.get("type", "simulate"), payload=child.get("payload", {}))
        return 201, self._workflow_view(body)

    def _workflow_view(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = [child.get("id") or f"{body['id']}/{n}" for n, child in enumerate(body["children"], start=1)]
        counts: dict[str, int] = {}
        for task_id in ids:
            counts[self.tasks[task_id]["status"]] = counts.get(self.tasks[task_id]["status"], 0) + 1
        then = self.tasks.get(f"{body['id']}/then")
        status = (
            "RUNNING" if then is None or then["status"] not in ("COMPLETED", "FAILED", "CANCELLED") else then["status"]
        )
        then_view = {"id": f"{body['id']}/then", "status": then["status"] if then else "WAITING"}
        return {"id": body["id"], "status": status, "counts": counts, "children": ids, "then": then_view}

    def _batch(self, body: Any) -> tuple[int, Any]:
        entries = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not 1 <= len(entries) <= 100:
            return 400, _error("validation_error", "not a batch", [{"field": "tasks", "message": "1 to 100 tasks"}])
        results = []
        for entry in entries:
            status, answer = self._publish(entry)
            if status == 201:
                results.append(answer)
            else:
                given = entry.get("id") if isinstance(entry, dict) else None
                results.append({"id": given if isinstance(given, str) else None, "error": answer["error"]})
        return 200, {"results": results}

    def _get(self, task: dict[str, Any], query: dict[str, str]) -> tuple[int, Any]:
        """The view; with `waitSeconds`, held until the task ends or that many seconds pass."""
        raw = query.get("waitSeconds")
        if raw is None:
            return 200, task
        if not re.fullmatch(r"[0-9]{1,2}", raw) or int(raw) > 20:
            return 400, _error(
                "validation_error", "bad query", [{"field": "waitSeconds", "message": "a whole number, 0 to 20"}]
            )
        deadline = time.monotonic() + int(raw)
        while task["status"] not in ("COMPLETED", "FAILED", "CANCELLED") and time.monotonic() < deadline:
            self.changed.wait(deadline - time.monotonic())
        return 200, task

    def _stats(self) -> dict[str, Any]:
        counts: dict[str, int | None] = {
            status: None if status in self.unknown_counts else sum(t["status"] == status for t in self.tasks.values())
            for status in STATUSES
        }
        depth = {"visible": 2, "inFlight": 1, "delayed": 0, "oldestAgeSeconds": 4}
        empty = {"visible": 0, "inFlight": 0, "delayed": 0, "oldestAgeSeconds": None}
        sources = {f"counts.{s}": {"source": "by-status index", "exact": True} for s in LISTED}
        sources |= {f"counts.{s}": {"source": "metrics, last 14 days", "exact": False} for s in APPROXIMATE}
        sources["repairs.adopted"] = {"source": "CloudWatch taskproc TasksAdopted", "exact": False}
        repairs = {"adopted": 2, "redispatched": None, "retriesAwaited": 0}
        queues = {"tasks": depth, "deadLetters": empty}
        stats = {"counts": counts, "queues": queues, "repairs": repairs, "sources": sources}
        if not self.without_throughput:
            stats["throughput"] = self.throughput or self._counted_throughput()
        return stats

    def _counted_throughput(self) -> dict[str, Any]:
        """The tasks' finishes, creations and retries, each in the last bucket (the fake clock's minute)."""
        per_type: dict[str, dict[str, list[float]]] = {name: {} for name in self.types}
        for task in self.tasks.values():
            last = per_type.setdefault(task["type"], {})
            ends = {"COMPLETED": "completed", "FAILED": "failed"}
            for kind, happened in (
                (ends.get(task["status"]), task["finishedAt"] is not None),
                ("accepted", True),
                ("retried", any(entry.get("kind") == "retry" for entry in task["history"])),
            ):
                if kind and happened:
                    last[kind] = [last.get(kind, [0.0])[0] + 1]
        return throughput_document(per_type, self.latencies)

    def _stuck(self, query: dict[str, str]) -> tuple[int, Any]:
        start, limit = int(query.get("cursor", "fake-0")[5:]), int(query.get("limit", self.stuck_page))
        page = self.stuck[start : start + limit]
        more = start + limit < len(self.stuck)
        return 200, {"tasks": page, "next": f"fake-{start + limit}" if more else None, "scanned": len(self.tasks)}

    def add_stuck(self, task_id: str, status: str, reason: str, since: str) -> dict[str, Any]:
        """A task, and `GET /stuck`'s entry for it."""
        task = self.add(task_id, status, attempts=1 if status == "PROCESSING" else 0)
        entry = {k: task[k] for k in ("id", "type", "status", "createdAt", "updatedAt")}
        self.stuck.append(entry | {"reason": reason, "since": since})
        return task

    def _list(self, query: dict[str, str]) -> tuple[int, Any]:
        status = query.get("status")
        if status not in LISTED:
            allowed = ", ".join(LISTED)
            return 400, _error("invalid_request", "bad status", [{"field": "status", "message": f"one of {allowed}"}])
        limit = int(query.get("limit", "50"))
        chosen = sorted((t for t in self.tasks.values() if t["status"] == status), key=lambda t: t["updatedAt"])
        if "tag" in query:
            chosen = [t for t in chosen if query["tag"] in t.get("tags", [])]
        if "type" in query:
            chosen = [t for t in chosen if t["type"] == query["type"]]
        chosen.reverse()
        start = 0
        if "cursor" in query:
            if not re.fullmatch(r"fake-\d+", query["cursor"]):
                return 400, _error("invalid_cursor", "the cursor was not made by this API")
            start = int(query["cursor"][5:])
        page = chosen[start : start + limit]
        more = start + limit < len(chosen)
        summaries = [
            {
                k: t[k]
                for k in ("id", "type", "status", "attempts", "maxAttempts", "createdAt", "updatedAt", "lastError")
            }
            | {"tags": t.get("tags", [])}
            for t in page
        ]
        return 200, {"tasks": summaries, "nextCursor": f"fake-{start + limit}" if more else None}

    def _mark(self, task: dict[str, Any], kind: str, status: str) -> None:
        task["history"].append({"kind": kind, "at": _now(), "by": "anonymous", "fromStatus": task["status"]})
        task["status"] = status
        task["updatedAt"] = _now()

    def _retry(self, task: dict[str, Any]) -> tuple[int, Any]:
        if task["status"] not in ("FAILED", "CANCELLED"):
            return 409, _error(
                "conflict", f"task {task['id']} is {task['status']}; only FAILED or CANCELLED tasks can be retried"
            )
        self._mark(task, "retry", "PENDING")
        task.update(attempts=0, lastError=None, finishedAt=None)
        return 202, task

    def _cancel(self, task: dict[str, Any]) -> tuple[int, Any]:
        if task["status"] == "PROCESSING":
            self._mark(task, "cancel_requested", "PROCESSING")
            task["cancelRequested"] = True
            return 202, task
        if task["status"] not in ("PENDING", "RETRYING"):
            return 409, _error("conflict", f"task {task['id']} is {task['status']}, which is final")
        self._mark(task, "cancel", "CANCELLED")
        return 200, task

    def _retries(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or body.get("status") != "FAILED":
            return 400, _error("invalid_request", "bad body", [{"field": "status", "message": "must be FAILED"}])
        limit = body.get("limit", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            return 400, _error("invalid_request", "bad body", [{"field": "limit", "message": "1 to 1000"}])
        matched = [t for t in self.tasks.values() if t["status"] == "FAILED"]
        if body.get("type"):
            matched = [t for t in matched if t["type"] == body["type"]]
        matched = matched[:limit]
        retried: list[str] = []
        if not body.get("dryRun"):
            for task in matched:
                self._retry(task)
                retried.append(task["id"])
        return 200, {
            "dryRun": bool(body.get("dryRun")),
            "matched": [t["id"] for t in matched],
            "retried": retried,
            "skipped": [],
        }

    # -- schedules (issue 20's contract) -----------------------------------------------------------

    def add_schedule(self, schedule_id: str, **fields: Any) -> dict[str, Any]:
        """A schedule as if created: an hourly checksum unless `fields` say otherwise."""
        schedule = {
            "id": schedule_id,
            "type": "checksum",
            "payload": {"text": "hourly"},
            "cron": "0 * * * *",
            "rate": None,
            "timezone": "UTC",
            "overlap": "skip",
            "catchupWindowSeconds": 300,
            "paused": False,
            "source": "api",
            "nextFirings": [f"2026-11-25T{hour:02d}:00:00Z" for hour in range(13, 18)],
            "lastFiring": None,
            "buffered": None,
            "lastSkip": None,
            "lastError": None,
            "counts": {"fired": 0, "skipped": 0, "missed": 0, "refused": 0, "caughtUp": 0},
            "history": [{"kind": "created", "at": "2026-11-25T12:00:00Z", "by": "anonymous"}],
            "createdAt": "2026-11-25T12:00:00Z",
            "updatedAt": "2026-11-25T12:00:00Z",
        } | fields
        self.schedules[schedule_id] = schedule
        return schedule

    def _schedule_page(self, query: dict[str, str]) -> dict[str, Any]:
        start, limit = int(query.get("cursor", "fake-0")[5:]), int(query.get("limit", "50"))
        chosen = [_summary(self.schedules[k]) for k in sorted(self.schedules)]
        more = start + limit < len(chosen)
        return {"schedules": chosen[start : start + limit], "nextCursor": f"fake-{start + limit}" if more else None}

    def _schedule_route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if path == "/schedules":
            if method == "GET":
                return 200, self._schedule_page(query)
            if method == "POST":
                return self._create_schedule(body)
        match = re.fullmatch(r"/schedules/([^/]+)(?:/(pause|resume|trigger|backfill))?", path)
        if match is None:
            return 404, _error("not_found", f"no route {method} {path}")
        schedule_id, verb = unquote(match[1]), match[2]
        schedule = self.schedules.get(schedule_id)
        if schedule is None:
            return 404, _error("not_found", f"no schedule with id {schedule_id!r}")
        if verb is None and method == "GET":
            return 200, schedule
        if verb is None and method == "PUT":
            problem = _schedule_problem(body, self.types)
            if problem:
                return 400, {"error": problem}
            schedule.update({k: v for k, v in body.items() if k != "id"})
            return 200, schedule
        if verb is None and method == "DELETE":
            del self.schedules[schedule_id]
            return 200, {"id": schedule_id, "deleted": True}
        if method == "POST" and verb in ("pause", "resume"):
            schedule["paused"] = verb == "pause"
            return 200, schedule
        if method == "POST" and verb == "trigger":
            at = _now()[:19] + "Z"
            task = self.add(f"{schedule_id}@{at}.manual", "PENDING", attempts=0)
            task.update(type=schedule["type"], payload=schedule["payload"])
            schedule["lastFiring"] = {"at": at, "taskId": task["id"], "status": "PENDING"}
            return 201, task
        if method == "POST" and verb == "backfill":
            if not isinstance(body, dict) or not {"from", "to"} <= body.keys():
                return 400, _error("validation_error", "bad body", [{"field": "from", "message": "Field required"}])
            published = [{"at": body["from"], "taskId": f"{schedule_id}@{body['from']}", "duplicate": False}]
            return 200, {"scheduleId": schedule_id, "published": published}
        return 404, _error("not_found", f"no route {method} {path}")

    def _create_schedule(self, body: Any) -> tuple[int, Any]:
        problem = _schedule_problem(body, self.types)
        if problem:
            return 400, {"error": problem}
        if body["id"] in self.schedules:
            return 409, _error("conflict", f"a schedule with id {body['id']!r} exists")
        return 201, self.add_schedule(body["id"], **{k: v for k, v in body.items() if k != "id"})


def _summary(schedule: dict[str, Any]) -> dict[str, Any]:
    """A schedule as GET /schedules lists it."""
    names = ("id", "type", "cron", "rate", "timezone", "paused", "source", "counts")
    last = schedule["lastFiring"]
    return {name: schedule[name] for name in names} | {
        "nextFiring": (schedule["nextFirings"] or [None])[0],
        "lastFiring": last["at"] if last else None,
    }


def _publish_problem(body: Any, types: dict[str, Any]) -> dict[str, Any] | None:
    """What POST /publish refuses in `body` (in the error shape's `error`), or None."""
    if not isinstance(body, dict):
        return _error("validation_error", "the body must be a JSON object", [{"field": "body", "message": "object"}])[
            "error"
        ]
    problems = []
    if not isinstance(body.get("id"), str) or not body["id"]:
        problems.append({"field": "id", "message": "Field required"})
    if body.get("type", "simulate") not in types:
        problems.append({"field": "type", "message": f"must be one of {', '.join(sorted(types))}"})
    if not isinstance(body.get("payload"), dict):
        problems.append({"field": "payload", "message": "Field required"})
    tags = body.get("tags", [])
    tag_rule = re.compile(r"[A-Za-z0-9_.:=-]{1,64}")
    if not isinstance(tags, list) or len(tags) > 10 or not all(tag_rule.fullmatch(str(t)) for t in tags):
        problems.append({"field": "tags", "message": "up to 10 tags of 1 to 64 characters [A-Za-z0-9_.:=-]"})
    return _error("validation_error", "the task is not valid", problems)["error"] if problems else None


def _schedule_problem(body: Any, types: dict[str, Any]) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        return _error("validation_error", "not an object", [{"field": "body", "message": "object"}])["error"]
    problems = []
    if not isinstance(body.get("id"), str) or not body["id"]:
        problems.append({"field": "id", "message": "Field required"})
    if body.get("type") not in types:
        problems.append({"field": "type", "message": f"must be one of {', '.join(sorted(types))}"})
    if ("cron" in body) == ("rate" in body):
        problems.append({"field": "cron", "message": "give exactly one of cron or rate"})
    return _error("validation_error", "the schedule is not valid", problems)["error"] if problems else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, body = self.server.fake.answer(method, self.path, headers, raw)
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeApi) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


@contextmanager
def serving(fake: FakeApi) -> Iterator[FakeApi]:
    """Serve `fake` on a free loopback port (its `url`) for the duration of the block."""
    server = _Server(fake)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
