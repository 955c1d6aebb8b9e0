"""The consumers' side: one batch of records in, one attempt per task, one outcome per record out.

`consumer.py` runs the batch under Lambda's rules; `attempt.py` runs a type's handler, under the
`deadline.py` bound and, for long types, the `heartbeat.py` lease; `backoff.py` is the delay before a
retry; `expiry.py` is when a task not yet started is no longer run; `terminal.py` publishes the
follow-ups of a task's terminal write (chains, callbacks, a workflow's fan-in).
"""
