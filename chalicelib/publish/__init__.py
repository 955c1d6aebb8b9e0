"""The producer's side: publish one task or a batch, its tags, and the long-poll that waits for its end.

`api.py` is what the task routes do (publish, read, wait); `batch.py` publishes up to 100 at once;
`tags.py` checks the labels a producer puts on a task; `wait.py` is `GET /tasks/{id}?waitSeconds=N`.
"""
