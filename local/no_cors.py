"""Turn off the CORS allowance moto's server sends to every origin.

moto's server wraps each service's Flask app in flask_cors (`CORS(backend_app)` in
`moto/moto_server/werkzeug_app.py`), which answers every origin, preflights included,
with an `Access-Control-Allow-Origin` that lets it in. The embedded endpoint holds the offline stack's
table and queues behind dummy credentials, so with that allowance any web page open in
the operator's browser could read and write them. moto's own switch is the environment
variable MOTO_DISABLE_GLOBAL_CORS, read once when `moto.settings` is first imported;
setting the flag it becomes on the module that reads it works whatever was imported
first, and keeps the choice in code rather than in every shell that starts the stack.
"""

from __future__ import annotations


def disable_cors() -> None:
    """Make moto's server build its service apps without flask_cors (call before it serves).

    Raises:
        RuntimeError: moto no longer has the switch this relies on.
    """
    from moto.moto_server import werkzeug_app

    if not hasattr(werkzeug_app, "DISABLE_GLOBAL_CORS"):
        raise RuntimeError("moto's werkzeug_app has no DISABLE_GLOBAL_CORS: local/no_cors.py needs updating")
    werkzeug_app.DISABLE_GLOBAL_CORS = True
