"""Workflows: a fan-out of child tasks with a fan-in, `then`, run once when the last child has ended.

`definition.py` reads and checks `POST /workflows` and holds the limits the workflow item must fit;
`store.py` keeps the workflow item in the task table and counts each child's end on it exactly once;
`fan_in.py` is the follow-up (chalicelib/consume/terminal.py) that counts a child, publishes `then`, applies
`onChildFailure` and the workflow's callback; `service.py` is what the two routes do.
docs/workflows.md, "Workflows", is the contract.
"""
