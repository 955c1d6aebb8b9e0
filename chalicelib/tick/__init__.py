"""Time-driven work: the minutely tick and what it sends.

`ticker.py` runs the tick's jobs; `timers.py` holds the message of a task that runs further ahead
than SQS can delay one; `clock.py` is the time the schedules read (wall time, or faster offline).
"""
