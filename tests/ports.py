"""Free CA ports for tests that run servers in the root namespace (other suites may hold some)."""

from __future__ import annotations

import random
import socket


def is_free(port: int, address: str = "0.0.0.0") -> bool:
    """Whether `port` can be bound now on `address`, for UDP and for TCP."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def free_port(low: int, high: int, address: str = "0.0.0.0", with_next: bool = False,
              rng: random.Random | None = None) -> int:
    """An even port in [low, high) free on `address` (and its successor too, when `with_next`)."""
    rng = rng or random.Random()
    for _ in range(200):
        port = rng.randrange(low, high, 2)
        if is_free(port, address) and (not with_next or is_free(port + 1, address)):
            return port
    raise RuntimeError(f"no free CA port in {low}-{high - 1}")
