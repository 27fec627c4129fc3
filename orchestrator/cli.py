"""The `iocfleet` command: parse options, call one service, render the result. No logic of its own.

Heavy libraries (docker, numpy, caproto) are imported inside commands so `iocfleet --help` stays fast.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import EXIT_INTERNAL, IocfleetError, SpecError


def _fail(exc: IocfleetError) -> None:
    if isinstance(exc, SpecError):
        for line in exc.problems:
            click.echo(line, err=True)
    else:
        click.echo(f"iocfleet: error: {exc.line()}", err=True)
    sys.exit(exc.exit_code)


class _Group(click.Group):
    """Turns our errors into their exit codes; anything else is an internal error (70)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except IocfleetError as exc:
            _fail(exc)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("iocfleet: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the CLI root is where unexpected errors become exit 70
            click.echo(f"iocfleet: internal error: {type(exc).__name__}: {exc} — please report it", err=True)
            sys.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="iocfleet")
def cli() -> None:
    """Plan, launch and diagnose fleets of EPICS Channel Access IOCs on one host."""


def _json(data) -> str:
    from .render import to_json

    return to_json(data)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stable keys) instead of a table.")
@click.option("--port", "ports", type=click.IntRange(1, 65535), multiple=True,
              help="Also report holders of this port (repeatable); 5064 and 5065 always.")
def interfaces(as_json: bool, ports: tuple[int, ...]) -> None:
    """Show interfaces, addresses, broadcast, flags, the default route, and who holds CA ports."""
    from . import host
    from .render import interfaces_text

    snap = host.snapshot(extra_ports=ports)
    if as_json:
        click.echo(_json(snap.to_dict()))
    else:
        click.echo(interfaces_text(snap))


@cli.command()
@click.argument("fleet", type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the validated fleet as JSON.")
def validate(fleet: str, as_json: bool) -> None:
    """Check a fleet file; print every problem as FILE:LINE: field: problem — fix (exit 2)."""
    from . import spec

    parsed = spec.load(fleet)
    if as_json:
        click.echo(_json(parsed.to_dict()))
    else:
        count = sum(i.replicas for i in parsed.iocs)
        click.echo(f"{fleet}: ok: fleet {parsed.name!r}, {count} IOC(s)")


_STRATEGY = click.Choice(["auto", "single", "shared-port", "distinct-ports"])


def _plan_options(func):
    func = click.option("--interface", help="Interface to serve on (overrides network.interface).")(func)
    func = click.option("--strategy", type=_STRATEGY, help="Override network.strategy.")(func)
    return click.argument("fleet", type=click.Path(dir_okay=True, path_type=str))(func)


@cli.command()
@_plan_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (stable keys).")
@click.option("--explain", is_flag=True, help="Print every decision with the rule behind it.")
def plan(fleet: str, strategy: str | None, interface: str | None, as_json: bool, explain: bool) -> None:
    """Plan bind addresses, ports and client settings for a fleet, and check them."""
    from .fleetplan import plan_file
    from .render import plan_text

    planned = plan_file(fleet, strategy, interface)
    click.echo(_json(planned.to_dict()) if as_json else plan_text(planned, explain))


@cli.command()
@_plan_options
def env(fleet: str, strategy: str | None, interface: str | None) -> None:
    """Print `export EPICS_CA_...` lines that let a client shell reach every IOC of the fleet."""
    from .fleetplan import plan_file
    from .render import export_lines

    click.echo(export_lines(plan_file(fleet, strategy, interface).plan.client_env_dict()))


@cli.command()
@_plan_options
@click.option("--json", "as_json", is_flag=True, help="Print findings as JSON.")
def check(fleet: str, strategy: str | None, interface: str | None, as_json: bool) -> None:
    """Check a fleet's plan against the rules and this host; exit 1 when any finding is an error."""
    from .errors import EXIT_FINDINGS
    from .fleetplan import plan_file
    from .render import findings_text

    planned = plan_file(fleet, strategy, interface)
    if as_json:
        click.echo(_json({"fleet": planned.plan.fleet, "findings": [f.to_dict() for f in planned.findings]}))
    else:
        click.echo(findings_text(planned.findings))
    if planned.has_errors:
        sys.exit(EXIT_FINDINGS)


def main() -> None:
    cli(prog_name="iocfleet")


if __name__ == "__main__":
    main()
