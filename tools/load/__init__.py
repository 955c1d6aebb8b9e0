"""The load test (`make loadtest`): publish N tasks, wait for them, report rates, latencies and the failure share."""
