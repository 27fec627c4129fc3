"""The `iocfleet` command: parse options, call one service, render the result. No logic of its own.

Heavy libraries (docker, numpy, caproto) are imported inside commands so `iocfleet --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from orchestrator import __version__
from orchestrator.errors import EXIT_INTERNAL, IocfleetError


def _fail(exc: IocfleetError) -> None:
    for line in exc.lines():
        click.echo(line, err=True)
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
        except KeyboardInterrupt as exc:
            from orchestrator.errors import EXIT_SIGINT, Terminated

            terminated = isinstance(exc, Terminated)
            click.echo(f"iocfleet: {'terminated (SIGTERM)' if terminated else 'interrupted'}", err=True)
            sys.exit(exc.exit_code if terminated else EXIT_SIGINT)
        except Exception as exc:  # noqa: BLE001 - the CLI root is where unexpected errors become exit 70
            click.echo(f"iocfleet: internal error: {type(exc).__name__}: {exc} — please report it", err=True)
            sys.exit(EXIT_INTERNAL)


def _complete_files(ctx, param, incomplete):
    from orchestrator.completion import fleet_files

    return fleet_files(incomplete)


def _complete_fleet(ctx, param, incomplete):
    from orchestrator.completion import complete_fleet

    return complete_fleet(ctx, param, incomplete)


def _complete_fleet_name(ctx, param, incomplete):
    from orchestrator.completion import complete_fleet_name

    return complete_fleet_name(ctx, param, incomplete)


def _complete_ioc(ctx, param, incomplete):
    from orchestrator.completion import complete_ioc

    return complete_ioc(ctx, param, incomplete)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="iocfleet")
def cli() -> None:
    """Plan, launch and diagnose fleets of EPICS Channel Access IOCs on one host."""


def _json(data) -> str:
    from orchestrator.render import to_json

    return to_json(data)


_BACKEND = click.Choice(["auto", "docker", "process"])
BACKEND_ENV = "IOCFLEET_BACKEND"  # the pytest plugin's --iocfleet-backend reads the same variable

@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stable keys) instead of a table.")
@click.option("--port", "ports", type=click.IntRange(1, 65535), multiple=True,
              help="Also report holders of this port (repeatable); 5064 and 5065 always.")
def interfaces(as_json: bool, ports: tuple[int, ...]) -> None:
    """Show interfaces, addresses, broadcast, flags, the default route, and who holds CA ports."""
    from orchestrator import host
    from orchestrator.render import interfaces_text

    snap = host.snapshot(extra_ports=ports)
    if as_json:
        click.echo(_json(snap.to_dict()))
    else:
        click.echo(interfaces_text(snap))


@cli.command()
@click.argument("fleet", type=click.Path(dir_okay=True, path_type=str), shell_complete=_complete_files)
@click.option("--json", "as_json", is_flag=True, help="Print the validated fleet as JSON.")
def validate(fleet: str, as_json: bool) -> None:
    """Check a fleet file; print every problem as FILE:LINE: field: problem — fix (exit 2)."""
    from orchestrator import spec

    parsed = spec.load(fleet)
    if as_json:
        click.echo(_json(parsed.to_dict()))
    else:
        count = sum(i.replicas for i in parsed.iocs)
        click.echo(f"{fleet}: ok: fleet {parsed.name!r}, {count} IOC(s)")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the fleet file (for editors: yaml-language-server, VS Code)."""
    from orchestrator.spec.schema import fleet_schema

    click.echo(_json(fleet_schema()))


_STRATEGY = click.Choice(["auto", "single", "shared-port", "distinct-ports", "name-server"])


def _plan_options(func):
    func = click.option("--interface", help="Interface to serve on (overrides network.interface).")(func)
    func = click.option("--strategy", type=_STRATEGY, help="Override network.strategy.")(func)
    return click.argument("fleet", type=click.Path(dir_okay=True, path_type=str), shell_complete=_complete_files)(func)


_pack_option = click.option(
    "--pack/--no-pack", default=None,
    help="Run the caproto IOCs packed, many in one process (overrides the file's `pack`; docs/packs.md).")


@cli.command()
@_plan_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (stable keys).")
@click.option("--explain", is_flag=True, help="Print every decision with the rule behind it.")
@_pack_option
def plan(fleet: str, strategy: str | None, interface: str | None, as_json: bool, explain: bool,
         pack: bool | None) -> None:
    """Plan bind addresses, ports and client settings for a fleet, and check them."""
    from orchestrator.plan.onhost import plan_file
    from orchestrator.render import plan_text

    planned = plan_file(fleet, strategy, interface, pack=pack)
    click.echo(_json(planned.to_dict()) if as_json else plan_text(planned, explain))


@cli.command()
@_plan_options
@click.option("--format", "fmt", type=click.Choice(["shell", "dotenv", "json", "phoebus"]), default="shell",
              show_default=True, help="shell: export lines to eval; dotenv: NAME=value (--env-file); "
                                      "json: an object; phoebus: a settings.ini (org.phoebus.pv.ca/...).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def env(fleet: str, strategy: str | None, interface: str | None, fmt: str, as_json: bool) -> None:
    """Print the client settings that reach every IOC of the fleet (`eval "$(iocfleet env FLEET)"`)."""
    from orchestrator.ca.formats import render
    from orchestrator.plan.onhost import plan_file

    planned = plan_file(fleet, strategy, interface).plan
    click.echo(render(planned.client_env_dict(), "json" if as_json else fmt, planned.fleet))


@cli.command()
@_plan_options
@click.option("--json", "as_json", is_flag=True, help="Print findings as JSON.")
@click.option("--backend", type=_BACKEND, default="auto", show_default=True, envvar=BACKEND_ENV, show_envvar=True,
              help="Where `up` would run the IOCs: decides their uid for the port-sharing checks (R2).")
@_pack_option
def check(fleet: str, strategy: str | None, interface: str | None, as_json: bool, backend: str,
          pack: bool | None) -> None:
    """Check a fleet's plan against the rules, this host and the other fleets on it; exit 1 on any error."""
    from orchestrator.plan.onhost import plan_file
    from orchestrator.render import findings_text
    from orchestrator.run.hostview import neighbour_findings
    from orchestrator.run.service import ioc_uid_for

    planned = plan_file(fleet, strategy, interface, ioc_uid=ioc_uid_for(backend), neighbours=neighbour_findings,
                        pack=pack)
    if as_json:
        click.echo(_json({"fleet": planned.plan.fleet, "findings": [f.to_dict() for f in planned.findings]}))
    else:
        click.echo(findings_text(planned.findings))
    planned.raise_for_errors()




def _finite(value: float, name: str) -> float:
    # FloatRange lets NaN through (every comparison with it is false), and a NaN timeout never expires.
    if value != value:
        raise click.BadParameter(f"{value} is not a number of seconds", param_hint=name)
    return value


@cli.command()
@_plan_options
@click.option("--backend", type=_BACKEND, default="auto", show_default=True, envvar=BACKEND_ENV, show_envvar=True,
              help="docker: containers with host networking; process: local processes; auto: docker if it answers.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=60, show_default=True,
              callback=lambda ctx, param, value: _finite(value, "--timeout"),
              help="Seconds to wait for every PV to answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (stable keys).")
@click.option("--dry-run", is_flag=True, help="Print what would change, change nothing.")
@click.option("--force", is_flag=True, help="Start even with error findings.")
@click.option("--keep-on-failure", is_flag=True, help="Leave started IOCs running when `up` fails.")
@click.option("--fanout", type=click.Choice(["none", "dnat"]), default=None,
              help="Override network.fanout: dnat makes unicast to this host reach every IOC (R17).")
@_pack_option
def up(fleet, strategy, interface, backend, timeout, as_json, dry_run, force, keep_on_failure, fanout, pack) -> None:
    """Start the fleet and wait until every PV is connectable through the printed client settings."""
    from orchestrator.render import diff_text, progress_printer, up_text
    from orchestrator.run.service import up_fleet

    progress = progress_printer(sys.stderr, not as_json)
    result = up_fleet(fleet, strategy, interface, backend, timeout, dry_run, force, keep_on_failure, progress,
                      notice=lambda line: click.echo(f"iocfleet: note: {line}", err=True), fanout=fanout,
                      pack=pack)
    if as_json:
        click.echo(_json(result.to_dict()))
    else:
        click.echo(diff_text(result) if dry_run else up_text(result))


def _fleet_name(fleet: str | None, fleet_name: str | None) -> str:
    from orchestrator.run.service import fleet_name_of

    return fleet_name_of(fleet, fleet_name)


@cli.command()
@click.argument("fleet", required=False, shell_complete=_complete_fleet)
@click.option("--fleet-name", help="The fleet's name, when the file is gone or changed.", shell_complete=_complete_fleet_name)
@click.option("--backend", type=_BACKEND, default="auto", show_default=True, envvar=BACKEND_ENV, show_envvar=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(fleet, fleet_name, backend, as_json) -> None:
    """Show every IOC of a fleet: state, exit code, restarts, TCP port."""
    from orchestrator.run.backends import select
    from orchestrator.render import status_text

    from orchestrator.run.instance import per_ioc
    from orchestrator.run.service import fleet_findings, readiness_now

    name = _fleet_name(fleet, fleet_name)
    chosen = select(backend)
    instances = per_ioc(chosen.instances(name))  # a pack shows as its IOCs, each naming the pack
    findings = fleet_findings(name, instances)
    ready = readiness_now(fleet, chosen) if instances else {}  # with the fleet file: how each IOC is ready
    if as_json:
        click.echo(_json({"fleet": name, "backend": chosen.name,
                          "iocs": [{**i.to_dict(), **ready.get(i.name, {})} for i in instances],
                          "findings": [f.to_dict() for f in findings]}))
    else:
        click.echo(status_text(name, chosen.name, instances, ready))
        for f in findings:
            click.echo(f"{f.severity}: {f.code}: {f.message} — {f.fix}")


@cli.command()
@click.argument("fleet", shell_complete=_complete_fleet)
@click.argument("ioc", shell_complete=_complete_ioc)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", type=click.IntRange(1), default=None, help="Only the last N lines.")
@click.option("--backend", type=_BACKEND, default="auto", show_default=True, envvar=BACKEND_ENV, show_envvar=True)
def logs(fleet, ioc, follow, tail, backend) -> None:
    """Print an IOC's log (FLEET is the fleet file or its name)."""
    from orchestrator.run.backends import select
    from orchestrator.run.lifecycle import find, follow_of, logs_of

    chosen = select(backend)
    instance = find(chosen, _fleet_name(fleet, None), ioc)
    if follow:
        for line in follow_of(chosen, instance, ioc):
            click.echo(line)
    else:
        click.echo("\n".join(logs_of(chosen, instance, ioc, tail)))


@cli.command()
@click.argument("fleet", shell_complete=_complete_fleet)
@click.argument("ioc", shell_complete=_complete_ioc)
@click.option("--backend", type=_BACKEND, default="auto", show_default=True, envvar=BACKEND_ENV, show_envvar=True)
def restart(fleet, ioc, backend) -> None:
    """Restart one IOC of a running fleet."""
    from orchestrator.run.backends import select
    from orchestrator.run.lifecycle import find
    from orchestrator.run.statedir import fleet_lock

    chosen = select(backend)
    name = _fleet_name(fleet, None)
    with fleet_lock(name, "restart"):
        found = find(chosen, name, ioc)
        if found.members and ioc != found.name:  # a packed IOC: its whole process goes (issue 14)
            click.echo(f"{ioc} runs in {found.name} with {len(found.members) - 1} other IOC(s): restarting the "
                       f"pack ({', '.join(found.members)})", err=True)
        instance = chosen.restart(found)
    click.echo(f"{instance.name}: {instance.state}")


@cli.command()
@click.argument("fleet", shell_complete=_complete_fleet)
@click.argument("ioc", shell_complete=_complete_ioc)
@click.option("--backend", type=_BACKEND, default="auto", show_default=True, envvar=BACKEND_ENV, show_envvar=True)
def attach(fleet, ioc, backend) -> None:
    """Attach this terminal to a softioc IOC's shell (iocsh); detach with Ctrl-P Ctrl-Q or Ctrl-] (the IOC keeps running)."""
    from orchestrator.run.backends import select
    from orchestrator.run.console import attach as join, open_console
    from orchestrator.run.lifecycle import find

    chosen = select(backend)
    instance = find(chosen, _fleet_name(fleet, None), ioc)
    sock = open_console(chosen, instance)
    click.echo(f"attached to {instance.name} ({chosen.name}); detach with Ctrl-P Ctrl-Q or Ctrl-]", err=True)
    try:
        why = join(sock)
    finally:
        sock.close()
    click.echo(f"\r\n{why}: {instance.name} keeps running", err=True)


@cli.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("fleet", shell_complete=_complete_fleet)
@click.argument("ioc", shell_complete=_complete_ioc)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=10, show_default=True,
              help="Seconds to wait for the command to finish.")
@click.option("--backend", type=_BACKEND, default="auto", show_default=True, envvar=BACKEND_ENV, show_envvar=True)
@click.option("--json", "as_json", is_flag=True, help="Print {fleet, ioc, command, output, status} as JSON.")
def exec_(fleet, ioc, command, timeout, backend, as_json) -> None:
    """Run one iocsh command in a softioc IOC (`iocfleet exec FLEET IOC -- dbpr PV 2`); exit 1 if iocsh fails."""
    from orchestrator.run.backends import select
    from orchestrator.run.console import command_line, exec_command, exit_status, open_console
    from orchestrator.run.lifecycle import find

    line = command_line(command)
    chosen = select(backend)
    instance = find(chosen, _fleet_name(fleet, None), ioc)
    sock = open_console(chosen, instance)
    try:
        output, status = exec_command(sock, line, timeout)
    finally:
        sock.close()
    if as_json:
        click.echo(_json({"fleet": instance.fleet, "ioc": instance.name, "command": line, "output": output,
                          "status": status}))
    elif output:
        click.echo(output)
    sys.exit(exit_status(status))


@cli.command()
@click.argument("fleet", required=False, shell_complete=_complete_fleet)
@click.option("--fleet-name", help="Remove the fleet of this name (when the file is gone or changed).",
              shell_complete=_complete_fleet_name)
@click.option("--backend", type=_BACKEND, default="auto", show_default=True, envvar=BACKEND_ENV, show_envvar=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def down(fleet, fleet_name, backend, as_json) -> None:
    """Remove every IOC of the fleet, found by label/state, even if the fleet file changed or is gone."""
    from orchestrator.run.backends import select
    from orchestrator.run.service import down_fleet

    name = _fleet_name(fleet, fleet_name)
    chosen = select(backend)
    removed = down_fleet(chosen, name)
    if as_json:
        click.echo(_json({"fleet": name, "backend": chosen.name, "removed": [i.name for i in removed]}))
    else:
        click.echo(f"fleet {name}: removed {len(removed)} instance(s) from {chosen.name}")


@cli.command()
@click.option("--fleet", type=click.Path(dir_okay=False, path_type=str), shell_complete=_complete_files,
              help="Fleet file: client settings and PV names from its plan; answers named by its IOCs.")
@click.option("--addr-list", help='Override EPICS_CA_ADDR_LIST, e.g. "198.51.100.255 10.0.0.5:5070".')
@click.option("--auto-addr-list", type=click.Choice(["yes", "no"], case_sensitive=False),
              help="Override EPICS_CA_AUTO_ADDR_LIST.")
@click.option("--names", multiple=True, help="PV names to search (repeatable; spaces or commas separate several).")
@click.option("--repeat", type=click.IntRange(1, 256), default=20, show_default=True,
              help="Search each name this many times, each from a fresh source port.")
@click.option("--timeout", type=float, default=0.5, show_default=True, help="Seconds to collect replies.")
@click.option("--probe-auto", is_flag=True,
              help="With EPICS_CA_AUTO_ADDR_LIST=YES also search every interface broadcast.")
@click.option("--backend", type=_BACKEND, default="auto", show_default=True, envvar=BACKEND_ENV, show_envvar=True,
              help="Where the fleet's IOCs run (with --fleet).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stable keys).")
def doctor(fleet, addr_list, auto_addr_list, names, repeat, timeout, probe_auto, backend, as_json) -> None:
    """Diagnose this shell's CA client settings against this host: who answers, and what to change (exit 1 on errors)."""
    import os

    from orchestrator.doctor.gather import DoctorOptions, run
    from orchestrator.doctor.judge import text

    auto = None if auto_addr_list is None else auto_addr_list.lower() == "yes"
    options = DoctorOptions(fleet=fleet, addr_list=addr_list, auto_addr_list=auto, names=names, repeat=repeat,
                            timeout=timeout, probe_auto=probe_auto, backend=backend)
    diagnosis = run(options, os.environ)
    click.echo(_json(diagnosis.to_dict()) if as_json else text(diagnosis))
    diagnosis.raise_for_errors()


@cli.group()
def images() -> None:
    """Build the IOC images (caproto, softioc) without a container registry."""


@images.command("build")
@click.option("--runtime", "runtimes", type=click.Choice(["caproto", "softioc"]), multiple=True,
              help="Build only this runtime (repeatable); default: both.")
@click.option("--base-image", metavar="IMG",
              help="Base image with python3.11 (default python:3.11-slim, else a Debian base made with mmdebstrap).")
@click.option("--offline", is_flag=True,
              help="Never pull an image or download a wheel: use local images and the wheelhouse.")
@click.option("--wheelhouse", type=click.Path(file_okay=False, path_type=Path),
              help="Directory of wheels to install from (default ~/.cache/iocfleet/wheels).")
@click.option("--mirror", metavar="URL", help="Debian mirror for the base (default: the host's apt sources).")
@click.option("--rebuild", is_flag=True, help="Rebuild everything, the Debian base included.")
@click.option("--json", "as_json", is_flag=True, help="Print the images as JSON (stable keys).")
def images_build(runtimes, base_image, offline, wheelhouse, mirror, rebuild, as_json) -> None:
    """Build the IOC images; an image whose inputs did not change is not rebuilt (exit 4 on failure)."""
    from orchestrator.images import build as image_builder
    from orchestrator.render import progress_printer, table

    built = image_builder.build_images(runtimes or image_builder.RUNTIMES, base_image=base_image,
                                       offline=offline, progress=progress_printer(sys.stderr, not as_json),
                                       wheelhouse_dir=wheelhouse, mirror=mirror, force=rebuild)
    if as_json:
        click.echo(_json([b.to_dict() for b in built]))
    else:
        click.echo(table(["runtime", "tag", "size", "status", "seconds"],
                         [[b.runtime, b.tag, f"{b.size_bytes // 2**20} MiB", "up to date" if b.cached else "built",
                           f"{b.seconds:.1f}"] for b in built]))


@cli.command("export")
@click.argument("kind", type=click.Choice(["compose", "swarm", "k8s", "bob", "pydm"]))
@click.argument("fleet", type=click.Path(dir_okay=True, path_type=str), shell_complete=_complete_files)
@click.option("-o", "--output", type=click.Path(writable=True, allow_dash=True), default="-",
              show_default=True, help="Write the file here (- for stdout); bob/pydm: a directory "
                                      "(default FLEET-bob / FLEET-pydm).")
@click.option("--interface", help="Interface to serve on here (overrides network.interface).")
@click.option("--strategy", type=_STRATEGY, help="Override network.strategy.")
@click.option("--host", "host_name", help="compose/swarm: the host of a multi-host fleet to export.")
@click.option("--node", help="This machine's node name (swarm placement, k8s nodeSelector); default: hostname.")
@click.option("--namespace", help="k8s: the namespace of every manifest.")
@click.option("--no-repeater", is_flag=True, help="Leave the CA repeater (UDP 5065) to the host (R12).")
@click.option("--flavor", type=click.Choice(["plain", "ec"]), default="plain", show_default=True,
              help="k8s: plain = a Deployment per IOC; ec = StatefulSets like epics-containers' ioc-instance chart.")
@click.option("--stopped", "stopped", multiple=True, metavar="IOC",
              help="k8s --flavor ec: this IOC gets replicas 0 (repeatable).")
@click.option("--compose-v1", is_flag=True, help="compose: leave out `name:` (docker-compose 1.x refuses it).")
@click.option("--json", "as_json", is_flag=True, help="Print the plans and findings as JSON instead.")
def export(kind, fleet, output, interface, strategy, host_name, node, namespace, no_repeater, flavor, stopped,
           compose_v1, as_json):
    """Export a fleet as a compose file, a swarm stack or Kubernetes manifests (docs/export.md)."""
    from orchestrator.export import export_file
    from orchestrator.render import findings_text

    result = export_file(kind, fleet, strategy=strategy, interface=interface, host=host_name, node=node,
                         namespace=namespace, repeater=not no_repeater, flavor=flavor, stopped=tuple(stopped),
                         compose_v1=compose_v1)
    if result.files is not None:
        from orchestrator.export.writer import write_files

        fleet_name = next(iter(result.plans.values())).fleet
        directory = write_files(result.files, output if output != "-" else f"{fleet_name}-{kind}")
        if as_json:
            click.echo(_json({**result.to_dict(), "directory": str(directory)}))
        else:
            click.echo(f"{directory}: {len(result.files)} {kind} file(s) for fleet {fleet_name!r}; open "
                       f"{directory / next(iter(result.files))}", err=True)
        return
    if as_json:
        click.echo(_json(result.to_dict()))
        return
    if result.findings:
        click.echo(findings_text(result.findings), err=True)
    _write_output(output, result.text)
    if output != "-":
        click.echo(f"{output}: {kind} for fleet {next(iter(result.plans.values())).fleet!r} "
                   f"({sum(len(p.iocs) for p in result.plans.values())} IOC(s) on {', '.join(result.plans)})",
                   err=True)


def _write_output(output: str, text: str) -> None:
    """Write `text` to `output` whole or not at all: a regular file through a temporary file renamed over
    it; `-` or a device directly. A missing folder or a full device is exit 2, not 70 (issue 13, class 7)."""
    import os

    from orchestrator.errors import UsageError

    if output == "-":
        click.echo(text, nl=False)
        return
    tmp = None
    try:
        if os.path.exists(output) and not os.path.isfile(output):
            with open(output, "w") as out:
                out.write(text)
            return
        tmp = f"{output}.{os.getpid()}.tmp"
        with open(tmp, "x") as out:
            out.write(text)
        os.replace(tmp, output)
        tmp = None
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}", "-o/--output",
                         "give a file in an existing directory you can write, on a device with room") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


@cli.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stable keys, docs/cli.md).")
def ls_command(as_json: bool) -> None:
    """List every fleet on this host, the CA servers of no fleet, and who provides the CA repeater."""
    from orchestrator.render import host_view_text
    from orchestrator.run.hostview import host_view

    view = host_view()
    click.echo(_json(view.to_dict()) if as_json else host_view_text(view))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(iocfleet completion bash)" (README)."""
    from orchestrator.completion import script

    click.echo(script(shell, cli))


def main() -> None:
    cli(prog_name="iocfleet")


if __name__ == "__main__":
    main()
