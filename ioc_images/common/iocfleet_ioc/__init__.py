"""Code shared by the iocfleet IOC programs: the PV contract, the simulations, the startup report.

This package is copied next to each runtime's program in its image, and found in
`ioc_images/common/` when the programs run from a source checkout. It needs numpy and nothing else,
so it must not import caproto or softioc (except `nameserver`, a program of its own that runs from
the caproto image and is imported by nothing here, and `pack`, imported only by the caproto program).
"""
