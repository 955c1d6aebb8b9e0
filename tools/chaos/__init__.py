"""The chaos suite: a stack tormented by kills, faults, duplicates, poison and an operator; then the invariants."""
