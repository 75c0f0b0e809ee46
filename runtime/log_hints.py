"""What the person on call should do, per warning/error event: one short ``hint`` added to the log line.

Keys are event names, or ``event:detail`` where one event covers several
situations (``security.event`` by ``kind``, ``usb.security.event`` and
``request.refused`` by ``code``); the detailed key wins. The table is the one
place to edit; ``tests/runtime/test_log_hints.py`` fails when code logs a
warning or error whose event has no hint here. docs/operations.md ("Log
events that need a person") says the same at more length.
"""

from __future__ import annotations

__all__ = ["HINTS", "hint_for"]

HINTS: dict[str, str] = {
    # gateway: registry
    "registry.expired": "the snapshot in force expired: sanaq-keys publish, then sanaq-keys push to every instance",
    "registry.missing": "no snapshot yet: sanaq-keys push the authority's latest snapshot to this instance",
    "registry.snapshot.refused": "check keys.root_public_key; compare the registry.snapshot credential with the latest",
    "registry.snapshot.superseded": "a newer snapshot is in force; nothing to do",
    "registry.store_behind": "the database holds an older snapshot (restored backup?): sanaq-keys push the newest",
    "registry.unconfirmed": "the database cannot confirm the registry: fix the store; clients get 503 and retry",
    "registry.follow_failed": "the registry could not be re-read from the store: check the store; retried",
    # gateway: requests and security
    "request.refused": "a client was refused; see code and detail (clients correct clock skew themselves)",
    "request.refused:unknown-key": "a device the registry does not list: enrolled but not pushed? sanaq-keys push",
    "request.refused:revoked": "a revoked, lost or returned device tried to sync: find it, check custody",
    "request.failed": "a bug: the client got 500; report it with this line",
    "security.event": "see kind; record it in the incident log",
    "security.event:seq-conflict": "two different batches under one seq: withdraw the tablet, compare its outbox",
    "security.event:revoked-signer": "a revoked device or station signed a request: find it (device_id), check custody",
    "security.event:revoked-device-batch": "a batch of a revoked tablet arrived: find the tablet, check custody",
    "security.event:device-mismatch": "a tablet sent another tablet's batch: treat as cloned or tampered",
    "security.event:unknown-signer-batch": "a batch signed by an unknown key: keep it, find who sent it",
    # gateway: worker processes (server.workers > 1)
    "gateway.worker.died": "a worker died and is replaced; clients retry. If it repeats: its last lines, kernel log",
    "gateway.worker.hung": "a hung worker was killed and is replaced; if it repeats, report its last lines",
    "gateway.worker.start_failed": "a worker could not start: see its stderr line (config, keys, store), fix, restart",
    # gateway: store
    "store.unavailable": "the census store refused: free disk space or restore the database; clients retry",
    "store.write_failed": "a write failed (disk full, I/O, PostgreSQL down): fix it; nothing acknowledged is lost",
    "store.writer.failed": "the store writer stopped: restart the gateway after fixing the store",
    "store.group.retry": "transient (deadlock, serialization, reconnect): alarm only if it keeps repeating",
    "store.job.refused": "one write was refused by the store; see error",
    "store.registry_listen.lost": "PostgreSQL dropped the registry LISTEN: reconnects by itself; check PostgreSQL",
    "nonces.purge_failed": "expired nonces were not purged: check the store; retried every minute",
    # staff dashboard
    "staff.act.pdf_unavailable": "no PDF font: install fonts-dejavu-core or set staff.pdf_font",
    "staff.codes.pdf_unavailable": "no PDF font, no code minted: install fonts-dejavu-core or set staff.pdf_font",


    "staff.certificates.pdf_unavailable": "no PDF font: install fonts-dejavu-core or set staff.pdf_font",
    "staff.certificates.key_revoked": "this gateway's certificate key is revoked: sanaq-keys certificate-key "
                                      "create, install the new key, restart",
    "staff.csrf_refused": "a form was posted without its token: an old page or a forged request",
    "staff.events.failed": "the live feed failed; pages still load: see error",
    "staff.feed.refresh_failed": "the dashboard could not read the store: check the store",
    "staff.listen.lost": "PostgreSQL dropped the dashboard's LISTEN: reconnects by itself; check PostgreSQL",
    "staff.login.throttled": "many failed logins: someone guessing, or a forgotten password",
    "staff.login.busy": "too many logins at once (password hashing is full): alarm only if it keeps repeating",
    "staff.store_failed": "staff.db could not be written: check disk space and permissions",
    # usb-ingest station
    "usb.trust.expired": "USB ingestion stopped: reconnect the station to the gateway (VPN); push a fresh snapshot",
    "usb.trust.refresh_failed": "the gateway was not reached for the registry: check VPN and gateway_url",
    "usb.trust.rollback_refused": "the gateway offered an older registry: a misconfigured gateway, or an attack",
    "usb.trust.snapshot_refused": "the offered registry does not verify: check the station bundle's root key",
    "usb.security.event": "keep the device; record who brought it",
    "usb.security.event:unknown-tablet": "unknown to the authority even after a registry refresh: keep the device",
    "usb.security.event:hid-interface": "the device also acts as a keyboard or mouse: keep it, never plug it again",
    "usb.batch.refused": "one batch file failed its check; the rest was taken: re-export from the tablet",
    "usb.volume.refused": "nothing was taken from this volume; see code",
    "usb.volume.refused:registry-stale": "old registry, gateway unreachable: reconnect the station, plug again",
    "usb.forward.station_refused": "the gateway refuses this station: re-enroll it (sanaq-keys enroll-station, push)",
    "usb.forward.bad_receipt": "a receipt did not verify: check the gateway's receipt key is in the registry",
    "usb.forward.deferred": "the gateway will accept this later (registry not pushed yet?): sanaq-keys push",
    "usb.forward.rejected": "the gateway rejected one batch for good: it is kept in spool/rejected",
    "usb.forward.retry_later": "the gateway is not reachable or busy: forwarding retries by itself",
    "usb.forward.spool_error": "the spool could not be updated: check disk space",
    "usb.gateway.clock_corrected": "this machine's clock is off: check NTP",
    "usb.spool.failed": "the spool could not be written: free space, check the disk; the tablet keeps its data",
    "usb.spool.entry_corrupt": "a damaged spool entry was moved aside, never forwarded: check the disk",
    "usb.spool.unreadable": "the spool cannot be read: check the disk and the state directory's owner",
    "usb.receipts.bad_line": "a damaged line in receipts.jsonl was skipped: check the disk",
    "usb.receipts.torn_line_dropped": "a line torn by a crash was dropped; nothing is lost",
    "usb.pull.crashed": "a bug while reading a device: report it with this line; unplug and plug again",
    "usb.cli.internal_error": "a bug: report it with this line",
    "usb.device.event_failed": "one udev event could not be handled: unplug and plug the tablet again",
    "usb.udev.callback_failed": "one udev event could not be handled: unplug and plug the tablet again",
    "usb.udev.device_skipped": "a device could not be inspected; it is ignored",
    "usb.udev.receive_failed": "udev events are not being received: restart sanaq-usb-ingest",
    # self-enumeration service
    "selfenum.spool.missing": "a stored sheet's spool file is gone: check the disk; the respondent must answer again",
    "selfenum.forward.blocked": "the gateway refuses the web service's key or clock: check enrollment, push, NTP",
    "selfenum.forward.refused": "the gateway refused one sheet for good: see code; it is marked refused",
    "selfenum.forward.bad_receipt": "a receipt did not verify: check the gateway's receipt key is in the registry",
    "selfenum.forward.receipt_mismatch": "a receipt names another batch: a misrouted or tampered answer; report it",
    "selfenum.trust.refresh_failed": "the gateway was not reached for the registry: check gateway_url; retried",
    "selfenum.trust.snapshot_refused": "the offered registry does not verify: check the web bundle's root key",
    "selfenum.codes.refused": "the gateway refuses the access-code poll: check the web service's enrolment; retried",
    "selfenum.codes.unreachable": "the gateway was not reached for access codes: check gateway_url; retried",
    "selfenum.codes.bad_document": "an access-code list did not verify: check the gateway's receipt key; report it",
    "selfenum.codes.pepper_mismatch": "the dashboard's codes.pepper differs from this service's: copy it over,"
    " restart",
    "selfenum.codes.mismatch": "an access-code list answers another request: misrouted or replayed; report it",
    "selfenum.codes.feed_behind": "the gateway holds fewer code changes than this service: staff.db restored? see"
    " docs/selfenum.md",
    "selfenum.sheet.not_stored": "a respondent's sheet could not be stored (disk full, I/O): free space now",
    # tablet reference client
    "outbox.coverage.refused": "a sync state did not verify: nothing deleted; check the gateway's receipt key",
    "outbox.seq.advanced": "the seq line was moved forward after re-provisioning: expected once",
    "sync.clock.corrected": "the tablet's clock is off: check its time settings",
    "sync.assignments.refused": "the gateway's assignments did not verify: list kept; check the gateway's keys",
    "sync.assignments.rollback": "gateway sent older assignments than held: list kept; is this the right gateway?",
    "sync.gave_up": "the gateway was not reached in this pass: retried later; data stays on the tablet",
    "sync.pass.incomplete": "batches are left for the next pass",
    "sync.plain_http": "plain HTTP is for tests only",
    "sync.refused": "the gateway refused: see code; a person must look",
    "sync.seq.diverged": "the gateway and the tablet disagree on seqs: contact support before deleting anything",
    "sync.stopped": "sync stopped and needs a person: see code",
}


def hint_for(event: str, detail: object = None) -> str | None:
    """The hint for ``event`` (``detail``: its kind or code, if any), or None."""
    if isinstance(detail, str) and f"{event}:{detail}" in HINTS:
        return HINTS[f"{event}:{detail}"]
    return HINTS.get(event)
