"""Diagnosing a client's view of this host: the data types (`model`), the static finding checks (`checks`),
the pure judgement of an observation (`judge`: per-path reach against `ca.rules`, then a verdict) and the
I/O that gathers one (`gather`: client settings, the batched search of `ca.probe`, the host snapshot; also
`python -m orchestrator.doctor`)."""
