"""The chaos suite: Tuneyard's promises checked under faults, by `make chaos`.

Each scenario starts real processes (Tuneyard replicas, the Replicate simulator)
against a PostgreSQL cluster of the suite's own, injects one kind of fault, and
compares what Tuneyard recorded with what was sent and what reached the
simulator. Its measurements go to a results file, from which `python -m chaos`
writes docs/RELIABILITY.md.
"""
