"""The embedded AWS endpoint grants no other origin access: no web page can read or write the offline stack."""

from __future__ import annotations

import pytest
import requests

FOREIGN = "https://evil.example"
# What a page's fetch to the endpoint would send: the headers a boto3-like call needs.
SQS_LIST = {"Action": "ListQueues", "Version": "2012-11-05"}
# moto routes by the credential scope's service and checks no signature.
SQS_AUTH = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, "
    "SignedHeaders=host, Signature=0"
}
DYNAMODB_LIST = {
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Content-Type": "application/x-amz-json-1.0",
    "Authorization": SQS_AUTH["Authorization"].replace("/sqs/", "/dynamodb/"),
}


def allowances(response: requests.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.lower().startswith("access-control-")}


def test_a_foreign_origins_calls_are_answered_without_a_cors_allowance(endpoint: str) -> None:
    sqs = requests.post(endpoint, data=SQS_LIST, headers=SQS_AUTH | {"Origin": FOREIGN}, timeout=15)
    dynamodb = requests.post(endpoint, data="{}", headers=DYNAMODB_LIST | {"Origin": FOREIGN}, timeout=15)

    assert sqs.status_code == 200 and b"ListQueuesResponse" in sqs.content  # the endpoint did answer
    assert dynamodb.status_code == 200 and "TableNames" in dynamodb.json()
    assert allowances(sqs) == {}
    assert allowances(dynamodb) == {}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_foreign_origins_preflight_gets_no_cors_allowance(endpoint: str, method: str) -> None:
    preflight = requests.options(
        endpoint,
        headers={
            "Origin": FOREIGN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "x-amz-target, content-type, authorization",
        },
        timeout=15,
    )

    assert allowances(preflight) == {}


def test_moto_would_allow_every_origin_without_the_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The patch is what turns the allowance off: moto's app as moto builds it, then as the endpoint does."""
    from moto.moto_server import werkzeug_app

    from local.no_cors import disable_cors

    monkeypatch.setattr(werkzeug_app, "DISABLE_GLOBAL_CORS", False)
    before = werkzeug_app.create_backend_app("sqs").test_client().options("/", headers={"Origin": FOREIGN})
    disable_cors()
    after = werkzeug_app.create_backend_app("sqs").test_client().options("/", headers={"Origin": FOREIGN})

    assert before.headers.get("Access-Control-Allow-Origin") in {"*", FOREIGN}
    assert "Access-Control-Allow-Origin" not in after.headers
