"""Diagnosing a client's view of this host: the data types (`model`), the finding checks (`checks`), the
pure judgement of an observation (`judge`) and the I/O that gathers one (`gather`, also
`python -m orchestrator.doctor`)."""
