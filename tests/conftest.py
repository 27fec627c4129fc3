"""Test-suite wide fixtures: network safety first.

Every CA server and client a test starts inherits the process environment, so the session starts by
pinning the CA address and beacon lists to loopback. Tests that need another path set their own lists
explicitly (and only to loopback or to interfaces the test created).
"""

from __future__ import annotations

import os

import pytest
from labnet import lab, lab2, lab_nobrd  # noqa: F401  (network-namespace fixtures, tests/labnet.py)

SAFE_CA_ENV = {
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CA_ADDR_LIST": "127.255.255.255",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.255.255.255",
}


@pytest.fixture(scope="session", autouse=True)
def ca_network_safety():
    """Pin CA address and beacon lists to loopback for the whole session, and check nobody unpins them."""
    saved = {k: os.environ.get(k) for k in SAFE_CA_ENV}
    os.environ.update(SAFE_CA_ENV)
    try:
        yield dict(SAFE_CA_ENV)
        for key, value in SAFE_CA_ENV.items():
            assert os.environ.get(key) == value, f"a test changed {key} in the session environment"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
