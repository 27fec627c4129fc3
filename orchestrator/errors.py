"""Errors that carry their exit code; only the CLI root turns them into exits.

Exit codes (docs/cli.md):
0 ok; 1 error findings (check, doctor); 2 usage or invalid fleet file; 3 `up` refused because of
conflicts; 4 backend unavailable; 5 readiness timeout; 70 unexpected internal error.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_BACKEND = 4
EXIT_TIMEOUT = 5
EXIT_INTERNAL = 70
EXIT_SIGINT = 130  # 128 + SIGINT (2), the shell's convention
EXIT_SIGTERM = 143  # 128 + SIGTERM (15)


class IocfleetError(Exception):
    """A failure a user can act on: what went wrong, where, and how to fix it."""

    exit_code = EXIT_INTERNAL

    def __init__(self, what: str, where: str = "", fix: str = "") -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = self.what
        if self.where:
            text += f" ({self.where})"
        if self.fix:
            text += f" — {self.fix}"
        return text

    def lines(self) -> list[str]:
        """How a user sees this error on stderr: `iocfleet: error: <what> (<where>) — <fix>`."""
        return [f"iocfleet: error: {self.line()}"]


class UsageError(IocfleetError):
    exit_code = EXIT_USAGE


class SpecError(IocfleetError):
    """An invalid fleet file; `problems` holds every problem found, one line each."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(problems[0] if problems else "invalid fleet file")

    def line(self) -> str:
        return self.what

    def lines(self) -> list[str]:
        """Every problem, one `FILE:LINE: field: problem — fix` line each."""
        return list(self.problems)


class FindingsError(IocfleetError):
    """A check or diagnosis found errors: the command exits 1 after printing its findings."""

    exit_code = EXIT_FINDINGS


class RefusedError(IocfleetError):
    exit_code = EXIT_REFUSED


class BackendUnavailable(IocfleetError):
    exit_code = EXIT_BACKEND


class ReadinessTimeout(IocfleetError):
    exit_code = EXIT_TIMEOUT


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt (so `up` rolls back as on Ctrl-C); the CLI exits 143, not 130."""

    exit_code = EXIT_SIGTERM


class ReachIncomplete(ReadinessTimeout):
    """Every PV answered once, but a client with the printed settings would not reach every IOC (R3)."""


def report(exc: IocfleetError, stream) -> int:
    """Write `exc` to `stream` as a user sees it (`exc.lines()`); return its exit code. For the module
    entry points (`python -m orchestrator.doctor`, `python -m orchestrator.ca.probe`); the CLI echoes the
    same lines."""
    for line in exc.lines():
        print(line, file=stream)
    return exc.exit_code
