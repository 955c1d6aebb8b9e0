"""Completion callbacks: a task published with `callback: {"url"}` has its outcome POSTed there, signed,
once it is terminal (docs/workflows.md).

`url.py` says which URLs a stage may call (the SSRF rules), `signing.py` signs a delivery and holds the
stage's key, `delivery.py` makes the one request to the address that was checked, and `follow_up.py`
publishes the `callback` task after a terminal write (chalicelib/consume/terminal.py runs it). The type itself,
whose attempts are the deliveries, is chalicelib/handlers/callback.py.
"""
