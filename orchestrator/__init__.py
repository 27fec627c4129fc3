"""iocfleet: plan, launch and diagnose fleets of EPICS Channel Access servers on one host.

The folders are the layers (docs/architecture.md): `spec` and `ca` at the bottom (with `errors`,
`findings`, `hostmodel`, `host`), `plan` on them, `run`, `doctor`, `export` and `images` on the plan,
`cli` on top."""

__version__ = "0.1.0"
