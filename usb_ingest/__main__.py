"""``sanaq-usb-ingest``: the USB ingestion service and its technician commands.

::

    sanaq-usb-ingest run    [--config FILE]        the service (systemd Type=notify)
    sanaq-usb-ingest pull   PATH [--config FILE] [--no-forward] [--wait S] [--json]
                                                   one volume (block device or image file), then forward
    sanaq-usb-ingest status [--config FILE] [--watch] [--json]
    sanaq-usb-ingest requeue (ID... | --all | --list) [--note TEXT] [--config FILE]
                                                   rejected entries back to the spool, once the cause is fixed
    sanaq-usb-ingest compact [--config FILE]       compact receipts.jsonl now (also done on start when worth it)

``status`` reads the spool itself (per tablet: pending, bytes, oldest
pending, forwarded, rejected) when it may read the state directory (root),
else shows the spool as the service last read it from disk. ``requeue`` and
``compact`` need the state directory's lock: stop the service first
(``systemctl stop sanaq-usb-ingest``) and start it again afterwards.

``pull`` exits 0 when everything on the volume was taken (and, unless
``--no-forward``, receipted by the gateway within ``--wait`` seconds), 1 when
something is left (refused batches, an interrupted read, batches still in the
spool), 2 on an error (refused volume, unusable station, bad config): one line
on stderr, never a traceback. Logs are JSON lines: on stdout for ``run``
(journald), on stderr for the other commands.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import grp
import json
import sys
import time
from pathlib import Path

import structlog

from keys.errors import KeysError
from runtime.logs import configure_logging
from runtime.toml_config import ConfigError

from .config import DEFAULT_CONFIG_PATH, IngestConfig, load_config
from .errors import IngestError, RequeueRefused, SpoolError, StateLocked
from .forwarder import Forwarder
from .puller import PullReport
from .spool_state import SpoolSnapshot
from .station import Station
from .station_text import StationText

__all__ = ["main"]

PROG = "sanaq-usb-ingest"
log = structlog.get_logger("usb_ingest.cli")


class _Refused(Exception):
    """The pull refused the volume: print the reason, exit 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Sanaq Sync USB ingestion station.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run the service"), ("pull", "pull one volume, then forward"),
                       ("status", "show the technician view"),
                       ("requeue", "move rejected entries back to be forwarded again (service stopped)"),
                       ("compact", "compact receipts.jsonl now (service stopped)")):
        c = sub.add_parser(name, help=text)
        c.add_argument("--config", type=Path, default=None,
                       help=f"TOML configuration (default {DEFAULT_CONFIG_PATH} if it exists)")
        if name == "pull":
            c.add_argument("path", help="block device (/dev/sdb1) or FAT image file")
            c.add_argument("--no-forward", action="store_true", help="only spool; the service forwards later")
            c.add_argument("--wait", type=float, default=60.0, help="seconds to keep forwarding (default 60)")
            c.add_argument("--json", action="store_true", help="print the pull report as JSON")
        if name == "status":
            c.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
            c.add_argument("--interval", type=float, default=1.0, help="refresh interval for --watch")
            c.add_argument("--json", action="store_true", help="print status.json")
        if name == "requeue":
            c.add_argument("ids", nargs="*", metavar="ID", help="a rejected entry's id, as `--list` prints it")
            c.add_argument("--all", action="store_true", help="every rejected entry")
            c.add_argument("--list", action="store_true", help="list the rejected entries and their reasons")
            c.add_argument("--note", default="", help="why it may be sent again (kept in the custody note)")
    return p


def _config(path: Path | None) -> IngestConfig:
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    return load_config(path)


@dataclasses.dataclass
class _Forwarding:
    """How forwarding ended for ``pull``: ``delivered`` None when not attempted; ``blocked`` the station refusal."""

    delivered: bool | None = None
    count: int = 0
    blocked: str | None = None
    last_error: str | None = None


async def _pull(config: IngestConfig, args: argparse.Namespace) -> tuple[PullReport, _Forwarding]:
    station = await asyncio.to_thread(Station.open, config)
    fwd = _Forwarding()

    def on_state(state: str, _retry_ms: int | None, error: str | None) -> None:
        if state == "blocked":
            fwd.blocked = error
        if error:
            fwd.last_error = error

    try:
        async with station.client() as client:
            if not args.no_forward or not station.trust.check_alarm():
                await station.trust.refresh(client)
            station.refresh_status()
            try:
                report = await asyncio.to_thread(station.pull_volume, args.path)
            except SpoolError:
                if not args.no_forward:  # forwarding is what frees the spool: send what is held, then fail
                    await Forwarder(station.spool, client, station.trust, config.forward).drain(args.wait)
                raise
            if not args.no_forward:
                forwarder = Forwarder(station.spool, client, station.trust, config.forward, on_state=on_state)
                fwd.delivered = await forwarder.drain(args.wait)
                fwd.count = forwarder.delivered_total
                state = "idle" if fwd.delivered else "blocked" if fwd.blocked else "waiting"
                station.board.set_forward(state, error=fwd.blocked,
                                          delivered_at_ms=time.time_ns() // 1_000_000
                                          if forwarder.delivered_total else None)
            station.refresh_status()
            return report, fwd
    finally:
        station.close()


def _print_report(report: PullReport, fwd: _Forwarding, as_json: bool, t: StationText) -> None:
    """The pull's outcome for the technician, in the station's language (``--json``: the raw report)."""
    if as_json:
        body = dataclasses.asdict(report)
        body["delivered"] = fwd.delivered
        body["forward_blocked"] = fwd.blocked
        print(json.dumps(body, sort_keys=True))
        return
    who = report.device_id or report.source
    # TRANSLATORS: %(outcome)s is a code (done, refused, interrupted) shown as it is
    print(t.gettext("%(who)s: %(outcome)s - %(new)s new batches spooled (%(bytes)s bytes), %(held)s already in the "
                    "spool, %(delivered)s already delivered, %(problems)s problem(s)",
                    who=who, outcome=report.outcome, new=len(report.spooled), bytes=report.bytes_spooled,
                    held=len(report.already_held), delivered=len(report.already_delivered),
                    problems=len(report.problems)))
    for pr in report.problems:
        where = f"{pr.file} " if pr.file else ""
        what = f"{pr.code}/{pr.kind}" if pr.kind else pr.code
        where += f"(seq {pr.seq}) " if pr.seq else ""
        # TRANSLATORS: %(what)s and %(message)s are technical (English, for support)
        print("  " + t.gettext("refused %(where)s%(what)s: %(message)s", where=where, what=what, message=pr.message))
    if fwd.blocked is not None and not fwd.delivered:
        reason = fwd.blocked.removeprefix("gateway refuses this station: ")
        print(t.gettext("NOT delivered: the gateway refuses this station (%(reason)s). The batches are stored on "
                        "this machine and stay in its spool until the station is enrolled again: call support. "
                        "The tablet keeps its own copy until a receipt reaches it.", reason=reason))
        return
    if fwd.delivered is True:
        print(t.ngettext("forwarded: %(n)s batch receipted by the gateway; nothing waits in the spool",
                         "forwarded: %(n)s batches receipted by the gateway; nothing waits in the spool", fwd.count)
              if fwd.count else t.gettext("forwarded: nothing waits in the spool"))
    elif fwd.delivered is False:
        if fwd.last_error:
            print(t.gettext("forwarding not finished (last answer: %(error)s): the rest stays in the spool for the "
                            "service to send", error=fwd.last_error))
        else:
            print(t.gettext("forwarding not finished: the rest stays in the spool for the service to send"))
    if report.safe_to_unplug:
        print(t.gettext("You may unplug the tablet."))


def _status(config: IngestConfig, args: argparse.Namespace) -> int:
    from rich.console import Console  # noqa: PLC0415 - rich only for this command

    from .spool_state import scan_spool  # noqa: PLC0415
    from .status_view import daemon_alive, load_view, render, watch  # noqa: PLC0415

    def read_spool() -> SpoolSnapshot:
        return scan_spool(config.spool_dir, config.receipt_log_path)

    console = Console()
    text = StationText(config.language)
    if args.watch:
        try:
            watch(config.status_path, interval_s=args.interval, console=console, text=text, read_spool=read_spool)
        except KeyboardInterrupt:
            return 0
    try:
        view, fresh = load_view(config.status_path, read_spool)
    except PermissionError as e:
        group = _owning_group(config.status_path.parent)
        raise IngestError(f"cannot read {config.status_path}: permission denied; the status is readable by root "
                          f"and by members of group {group}: run `sudo {PROG} status`, or join the group "
                          f"(sudo usermod -aG {group} $USER, then log in again)") from e
    except FileNotFoundError as e:
        raise IngestError(f"no status at {config.status_path}: the service has not run yet on this machine "
                          f"(systemctl start {PROG}), or --config names another state_dir") from e
    except OSError as e:
        raise IngestError(f"cannot read {config.status_path} ({e.strerror})") from e
    except ValueError as e:
        raise IngestError(f"{config.status_path} is not a status file ({e})") from e
    if args.json:
        print(json.dumps(view.to_json(), sort_keys=True, indent=1))
    else:
        console.print(render(view, now_ms=time.time_ns() // 1_000_000, alive=daemon_alive(view), text=text,
                             fresh=fresh))
    return 0


def _requeue(config: IngestConfig, args: argparse.Namespace) -> int:
    from .station import locked_spool  # noqa: PLC0415

    if args.list == bool(args.ids or args.all) or (args.ids and args.all):
        raise IngestError("requeue: give entry ids, or --all, or --list")
    with locked_spool(config) as spool:
        rejected = spool.rejected_entries()
        if args.list:
            for e in rejected:
                why = f"{e.reason.get('status', '')} {e.reason.get('code', '?')}".strip()
                print(f"{e.name}  {e.kind} {e.device_id} {'seq' if e.kind == 'batch' else 'pulled_at_ms'} "
                      f"{e.number}: {why}")
            print(f"{len(rejected)} rejected entr{'y' if len(rejected) == 1 else 'ies'}")
            return 0
        names = [e.name for e in rejected] if args.all else list(args.ids)
        now = time.time_ns() // 1_000_000
        refused = 0
        for name in names:
            try:
                spool.requeue(name, note=args.note, now_ms=now)
                print(f"requeued {name}")
            except RequeueRefused as e:
                refused += 1
                print(f"not requeued {name}: {e}", file=sys.stderr)
        print(f"{len(names) - refused} requeued; start the service to forward them")
        return 1 if refused else 0


def _compact(config: IngestConfig) -> int:
    from .station import locked_spool  # noqa: PLC0415

    with locked_spool(config) as spool:
        result = spool.compact_receipts(now_ms=time.time_ns() // 1_000_000, keep_receipts_ms=config.receipt_keep_ms)
    if result is None:
        print("receipts.jsonl: nothing to compact")
    else:
        print(f"receipts.jsonl: {result.lines_before} -> {result.lines_after} lines, {result.bytes_before} -> "
              f"{result.bytes_after} bytes ({result.receipts_dropped} old receipts reduced to their index entry, "
              f"{result.duplicates_dropped} duplicate lines dropped)")
    return 0


def _owning_group(path: Path) -> str:
    try:
        return grp.getgrgid(path.stat().st_gid).gr_name
    except (OSError, KeyError):
        return "sanaq-ingest"


def _dispatch(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if args.command == "run":
        from .daemon import run  # noqa: PLC0415 - keeps `status` free of the asyncio/udev imports

        configure_logging(config.log_level)
        return asyncio.run(run(config))
    if args.command == "status":
        configure_logging("warning", sys.stderr)
        return _status(config, args)
    if args.command in ("requeue", "compact"):
        configure_logging(config.log_level, sys.stderr)
        return _requeue(config, args) if args.command == "requeue" else _compact(config)
    configure_logging(config.log_level, sys.stderr)
    report, fwd = asyncio.run(_pull(config, args))
    _print_report(report, fwd, args.json, StationText(config.language))
    if report.outcome == "refused":
        first = report.problems[0] if report.problems else None
        raise _Refused(f"{first.code}: {first.message}" if first else "refused")
    if report.outcome == "complete" and fwd.delivered is not False:
        return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except _Refused as e:
        print(f"{PROG}: error: volume refused: {e}", file=sys.stderr)
    except StateLocked as e:
        then = (f"then `{PROG} {args.command} ...`, then systemctl start {PROG}" if args.command != "pull" else
                f"or leave the pull to the service: plug the tablet in and watch `{PROG} status --watch`")
        print(f"{PROG}: error: {e.code}: the {PROG} service (or another pull) is using {e.facts.get('path')}: "
              f"stop {PROG} first (systemctl stop {PROG}), {then}", file=sys.stderr)
    except IngestError as e:
        print(f"{PROG}: error: {e.code}: {e}", file=sys.stderr)
    except (ConfigError, KeysError) as e:
        print(f"{PROG}: error: {getattr(e, 'code', 'config')}: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: still one line for the technician, the details go to the log
        log.exception("usb.cli.internal_error")
        print(f"{PROG}: error: internal: {type(e).__name__}: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
