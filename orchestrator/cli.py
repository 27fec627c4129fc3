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


def _echo_json(data) -> None:
    from .render import to_json

    click.echo(to_json(data))


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
        _echo_json(snap.to_dict())
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
        _echo_json(parsed.to_dict())
    else:
        count = sum(i.replicas for i in parsed.iocs)
        click.echo(f"{fleet}: ok: fleet {parsed.name!r}, {count} IOC(s)")


def main() -> None:
    cli(prog_name="iocfleet")


if __name__ == "__main__":
    main()
