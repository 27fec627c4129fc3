"""iocfleet: plan, launch and diagnose fleets of EPICS Channel Access servers on one host."""

__version__ = "0.1.0"
