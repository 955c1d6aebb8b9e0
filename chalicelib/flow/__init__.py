"""Flow control: what may hold an attempt back before it starts (caps, rates, pauses) and what
keeps a publish from queuing a second task (unique keys). Every item lives in the flow table."""
