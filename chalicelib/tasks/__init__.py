"""The task item and its message: the task table, the queues, and the index over them.

`store.py` is the lease lifecycle (create, acquire, complete, fail); `record.py` the item as read;
`table.py` the DynamoDB plumbing the store and the operator's writes share; `index.py` the sparse
listing index's keys; `queue.py` one SQS queue; `priority.py` which queue a task's class is.
"""
