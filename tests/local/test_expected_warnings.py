"""The offline API is quiet about what it is meant to do: Chalice's warning that it cannot check IAM."""

from __future__ import annotations

import warnings

from chalice import Chalice, IAMAuthorizer
from chalice.local import LambdaContext, LocalGatewayAuthorizer

from local.api import silence_expected_warnings


def _authorize_an_iam_route() -> list[str]:
    """What Chalice's local server warns while it admits a request to a route IAM guards on AWS."""
    app = Chalice("iam-route")

    @app.route("/ops", authorizer=IAMAuthorizer())
    def ops() -> dict[str, str]:
        return {}

    event = {"requestContext": {"httpMethod": "GET", "resourcePath": "/ops"}, "headers": {}}
    context = LambdaContext("api", 128)
    with warnings.catch_warnings(record=True) as caught:
        LocalGatewayAuthorizer(app).authorize("/ops", event, context)
    return [str(warning.message) for warning in caught]


def test_chalice_warns_about_an_iam_route_until_the_offline_api_silences_it() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = _authorize_an_iam_route()
        silence_expected_warnings()
        after = _authorize_an_iam_route()

    assert any("IAMAuthorizer is not a supported in local mode" in message for message in before)
    assert after == []
