"""Schedules: recurring firings of a task type, kept as objects of their own.

`definition` is what an operator or the code declares (cron or rate, zone, overlap, catch-up) and
when it fires; `store` keeps schedules in the schedules table under a version; `engine` fires the
due ones each tick and carries out trigger and backfill; `declared` reconciles the schedules the
task types declare in code; `routes` is what the `/schedules` routes do.
"""
