"""The benchmark (`make bench`): AWS requests per task, cost per million, the embedded queue at depth, drains."""
