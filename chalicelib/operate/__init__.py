"""The operator's surface: list, count, retry, cancel, pause and resume, each one service function.

`operations.py` holds the task actions and `/stats`; `operator_store.py` their conditional writes;
`listing.py` reads the listing index a page at a time behind `cursor.py`'s signed cursors;
`schedule_stats.py` sums the schedules' counters; `task_types.py` is the view of the task types.
"""
