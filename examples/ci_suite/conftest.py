"""An example CI suite: every test brings the fleet up with `ca_fleet` (the iocfleet pytest plugin)."""
