"""Findings: what a check, the conflict check or the doctor reports, with a stable code and a fix.

The one vocabulary every layer shares: `Finding`, the severities and their order, `has_errors`. Codes
are listed in docs/findings.md and never renamed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.errors import FindingsError

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)  # most severe first
SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class Finding:
    """A problem or notice about a plan or a host, with a stable code and a fix."""

    code: str
    severity: str  # "error" | "warning" | "info"
    message: str
    fix: str
    rule: str = ""
    subjects: tuple[str, ...] = ()  # IOC names, pids, addresses the finding is about

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "message": self.message, "fix": self.fix,
                "rule": self.rule, "subjects": list(self.subjects)}


def by_severity(findings: Iterable[Finding]) -> list[Finding]:
    """The findings errors first, then warnings, then infos (stable within a severity)."""
    return sorted(findings, key=lambda f: SEVERITY_ORDER[f.severity])


def errors_of(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


def raise_for_errors(findings: Iterable[Finding], where: str) -> None:
    """Raise FindingsError (exit 1) naming the first error finding and its fix; call after rendering."""
    errors = errors_of(findings)
    if errors:
        raise FindingsError(f"{len(errors)} error finding(s), first: {errors[0].code}", where, errors[0].fix)
