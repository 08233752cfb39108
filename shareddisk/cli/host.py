"""Commands about this host: install-units (systemd unit, agents, man pages)
and the hardware watchdog."""

from __future__ import annotations

import click

from shareddisk import __version__
from shareddisk.cli.common import emit, json_option
from shareddisk.errors import UsageError


@click.command("install-units")
@click.option("--prefix", default="/", show_default=True, type=click.Path(file_okay=False),
              help="Install under this root (a package build root, a test directory).")
@click.option("--command", "command", default=None, metavar="PATH",
              help="The shareddisk command the unit and agents run (default: this one).")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@json_option
def install_units(prefix: str, command: str | None, dry_run: bool, as_json: bool) -> None:
    """Install the systemd unit and the Pacemaker agents shipped with this package.

    Writes shareddisk@.service to /etc/systemd/system, an example environment
    file to /etc/shareddisk (never over an existing one), the OCF agent to
    /usr/lib/ocf/resource.d/shareddisk, fence_shareddisk to /usr/sbin and
    the man pages to /usr/local/share/man/man1; the unit and agents name this installation's shareddisk command by its absolute path
    (so a pipx or venv install works under systemd and Pacemaker).  Then run
    `systemctl daemon-reload`.
    """
    from shareddisk import units
    from shareddisk.manpages import all_pages
    main = click.get_current_context().find_root().command  # the group being run
    pages = all_pages(main, __version__, date=units.release_date())
    planned = units.plan(prefix, command, pages)
    if not dry_run:
        units.install(planned)
    data = {"dry_run": dry_run, "command": command or units.command_path(),
            "files": [p.to_json() for p in planned]}
    verb = {"install": "would install" if dry_run else "installed",
            "unchanged": "unchanged", "kept": "kept (exists)"}
    emit(as_json, data, "\n".join(f"{verb[p.action]:<14} {p.target}" for p in planned))


# --- the hardware watchdog -------------------------------------------------------


@click.group("watchdog")
def watchdog_group() -> None:
    """Hardware watchdog devices: list them, test that one resets the host."""


@watchdog_group.command("list")
@json_option
def watchdog_list(as_json: bool) -> None:
    """Watchdog devices with identity and timeouts (one in use is read from sysfs)."""
    from shareddisk.watchdog import describe, list_devices
    devices = [describe(path) for path in list_devices()]
    emit(as_json, {"devices": devices}, "\n".join(
        f"{d['device']}: {d.get('identity', '?')}, timeout {d.get('timeout', '?')} s "
        f"(range {d.get('min_timeout', '?')}..{d.get('max_timeout', '?')} s), "
        f"{d.get('state', 'state unknown')}"
        + (", nowayout" if d.get("nowayout") == 1 else "") for d in devices)
        or "no watchdog device (/dev/watchdog*); load a driver (e.g. i6300esb, iTCO_wdt, "
           "or softdog as a last resort)")


@watchdog_group.command("test")
@click.argument("device", default="/dev/watchdog")
@click.option("--timeout", type=click.IntRange(1, 65535), default=5, show_default=True,
              help="Seconds until the reset.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
def watchdog_test(device: str, timeout: int, yes: bool) -> None:
    """Arm DEVICE and let it fire: THIS HOST RESETS (the lab's check of a watchdog)."""
    import time

    from shareddisk.errors import DeviceError
    from shareddisk.watchdog import HardwareWatchdog, check_device
    check_device(device)
    if not yes and not click.confirm(f"Arm {device} and let it reset this host in about "
                                     f"{timeout} s?", err=True):
        raise UsageError("watchdog test: not confirmed (give --yes in scripts)")
    hw = HardwareWatchdog(device, timeout)
    click.echo(f"{device} ({hw.identity.identity}) armed with {hw.timeout} s; not petting it "
               f"any more: the host should reset now", err=True)
    time.sleep(2 * hw.timeout + 5)  # holding it open: a driver without magic close stops on close
    raise DeviceError(f"watchdog {device}: the host did not reset within {2 * hw.timeout + 5} "
                      f"s of arming it ({hw.timeout} s)")