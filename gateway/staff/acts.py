"""Acceptance-transfer acts: issuing a tablet to a responsible worker and taking it back.

An act is recorded by an admin, numbered ``<prefix>-<year>-<NNNNN>``, and
never edited (a mistake is corrected by the next act). The registry stays the
authority on who holds which key: an act's institution and worker id are the
registry's, a form that names others is refused, and ``reconcile`` compares
each tablet's last act with the current snapshot and says what to do when
they disagree.

Rules: an issue act needs the tablet ``issued`` in the registry and no open
issue act; a return act needs an open issue act and a later time; every act
is dated inside the window the census dates of ``StaffConfig`` give
(``acts_window_ms``) and not in the future.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from l10n import N_
from wire import RegistrySnapshot

from .accounts import write_audit
from .config import StaffConfig
from .db import StaffConn, transaction
from .errors import ActRefused, StaffInputError
from .lists import clean_text

__all__ = [
    "ACCESSORIES",
    "ACT_KINDS",
    "Act",
    "ActForm",
    "CustodyCheck",
    "get_act",
    "last_acts",
    "list_acts",
    "parse_act_form",
    "reconcile",
    "record_act",
]

ACT_KINDS = ("issue", "return")
ACCESSORIES = ("charger", "case", "cable")
_LOCAL_DT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$")
_FUTURE_SLACK_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class ActForm:
    kind: str
    device_id: str
    worker_name: str
    staff_name: str
    accessories: tuple[str, ...]
    other_accessories: str
    condition_note: str
    acted_at_ms: int
    worker_id: str = ""
    institution: str = ""


@dataclass(frozen=True, slots=True)
class Act:
    act_no: str
    kind: str
    device_id: str
    usb_serial: str
    institution: str
    worker_id: str
    worker_name: str
    staff_name: str
    accessories: tuple[str, ...]
    other_accessories: str
    condition_note: str
    acted_at_ms: int
    created_at_ms: int
    created_by: str
    registry_version: int | None
    registry_status: str | None


@dataclass(frozen=True, slots=True)
class CustodyCheck:
    """``msgid`` with ``params`` is what the pages translate; ``message`` is the English text."""

    device_id: str
    act: Act | None
    registry_status: str | None
    ok: bool
    msgid: str
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return self.msgid % dict(self.params) if self.params else self.msgid


def _acted_at(when: str, *, now_ms: int, config: StaffConfig) -> int:
    """The act's instant (Unix ms) from a local ``YYYY-MM-DDTHH:MM`` (empty: now), inside the acts window.

    Compared as local wall-clock times first, so no date however far off can
    overflow the conversion; raises ``StaffInputError`` naming ``acted_at``.
    """
    tz = timezone(timedelta(minutes=config.utc_offset_minutes))
    first_ms, last_ms = config.acts_window_ms()

    def local(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz).replace(tzinfo=None)

    if when:
        if not _LOCAL_DT.match(when):
            raise StaffInputError(N_("date and time as YYYY-MM-DDTHH:MM"), field="acted_at")
        try:
            at = datetime.fromisoformat(when)
        except ValueError as e:
            raise StaffInputError(N_("not a valid date and time"), field="acted_at") from e
    else:
        at = local(now_ms)
    if at > local(now_ms + _FUTURE_SLACK_MS):
        raise StaffInputError(N_("the act cannot be dated in the future"), field="acted_at")
    first, last = local(first_ms), local(last_ms)
    if not first <= at <= last:
        raise StaffInputError(
            N_("%(at)s is outside the period acts may carry, %(first)s to %(last)s (%(zone)s), set by the census "
               "dates of the [staff] configuration"),
            field="acted_at",
            at=f"{at:%Y-%m-%d %H:%M}",
            first=f"{first:%Y-%m-%d %H:%M}",
            last=f"{last:%Y-%m-%d %H:%M}",
            zone=config.zone_text,
        )
    return int(at.replace(tzinfo=tz).timestamp() * 1000)


def parse_act_form(form: Mapping[str, str], *, now_ms: int, config: StaffConfig) -> ActForm:
    """Validate the act form fields; raises ``StaffInputError`` naming the field.

    ``acted_at`` must lie in ``config.acts_window_ms()`` (from the census dates)
    and not in the future.
    """
    kind = form.get("kind", "")
    if kind not in ACT_KINDS:
        raise StaffInputError(N_("choose issue or return"), field="kind")
    device_id = form.get("device_id", "").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", device_id):
        raise StaffInputError(N_("choose a tablet"), field="device_id")
    accessories = tuple(a for a in ACCESSORIES if form.get(f"acc_{a}") == "on")
    acted_at_ms = _acted_at(form.get("acted_at", "").strip(), now_ms=now_ms, config=config)
    note = " ".join(form.get("condition_note", "").split())
    return ActForm(
        kind=kind,
        device_id=device_id,
        worker_name=clean_text(form.get("worker_name", ""), "worker_name", required=True, name=True),
        staff_name=clean_text(form.get("staff_name", ""), "staff_name", required=True, name=True),
        accessories=accessories,
        other_accessories=clean_text(
            form.get("other_accessories", ""), "other_accessories", required=False, name=False
        ),
        condition_note=clean_text(note, "condition_note", required=False, name=False, max_len=500),
        acted_at_ms=acted_at_ms,
        worker_id=form.get("worker_id", "").strip(),
        institution=form.get("institution", "").strip(),
    )


_ACT_COLUMNS = (
    "a.act_no, a.kind, a.device_id, a.usb_serial, a.institution, a.worker_id, a.worker_name, a.staff_name,"
    " a.accessories, a.condition_note, a.acted_at_ms, a.created_at_ms, u.username, a.registry_version,"
    " a.registry_status"
)


def _act(row: tuple) -> Act:  # type: ignore[type-arg]
    acc = json.loads(row[8])
    return Act(
        act_no=row[0],
        kind=row[1],
        device_id=row[2],
        usb_serial=row[3],
        institution=row[4],
        worker_id=row[5],
        worker_name=row[6],
        staff_name=row[7],
        accessories=tuple(acc.get("items", [])),
        other_accessories=acc.get("other", ""),
        condition_note=row[9],
        acted_at_ms=row[10],
        created_at_ms=row[11],
        created_by=row[12],
        registry_version=row[13],
        registry_status=row[14],
    )


def get_act(conn: StaffConn, act_no: str) -> Act | None:
    row = conn.execute(
        f"SELECT {_ACT_COLUMNS} FROM acts a JOIN users u ON u.id = a.created_by WHERE a.act_no = ?",  # noqa: S608
        (act_no,),
    ).fetchone()
    return None if row is None else _act(row)


def list_acts(conn: StaffConn, limit: int) -> list[Act]:
    rows = conn.execute(
        f"SELECT {_ACT_COLUMNS} FROM acts a JOIN users u ON u.id = a.created_by"  # noqa: S608
        " ORDER BY a.acted_at_ms DESC, a.id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_act(r) for r in rows]


def last_acts(conn: StaffConn) -> dict[str, Act]:
    """Each device's latest act (by act time, then by entry order)."""
    rows = conn.execute(
        f"SELECT {_ACT_COLUMNS} FROM acts a JOIN users u ON u.id = a.created_by"  # noqa: S608
        " WHERE a.id = (SELECT b.id FROM acts b WHERE b.device_id = a.device_id"
        " ORDER BY b.acted_at_ms DESC, b.id DESC LIMIT 1)"
    ).fetchall()
    return {r[2]: _act(r) for r in rows}


def record_act(
    conn: StaffConn,
    form: ActForm,
    snapshot: RegistrySnapshot | None,
    *,
    user_id: int,
    now_ms: int,
    prefix: str,
    utc_offset_minutes: int,
) -> str:
    """Check the act against history and registry, store it, and return its number."""
    if snapshot is None:
        raise ActRefused(N_("no registry snapshot is loaded; acts need the registry"), field="device_id")
    tablet = next((t for t in snapshot.tablets if t.device_id == form.device_id), None)
    if tablet is None:
        raise ActRefused(
            N_("%(device)s is not in registry snapshot v%(version)s"),
            field="device_id",
            device=form.device_id,
            version=snapshot.version,
        )
    if form.worker_id and form.worker_id != tablet.worker_id:
        raise ActRefused(
            N_("the registry binds %(device)s to worker %(worker)s, not %(given)s"),
            field="worker_id",
            device=tablet.device_id,
            worker=tablet.worker_id,
            given=form.worker_id,
        )
    if form.institution and form.institution != tablet.institution:
        raise ActRefused(
            N_("the registry binds %(device)s to institution %(institution)s, not %(given)s"),
            field="institution",
            device=tablet.device_id,
            institution=tablet.institution,
            given=form.institution,
        )
    year = datetime.fromtimestamp(form.acted_at_ms / 1000, timezone(timedelta(minutes=utc_offset_minutes))).year
    with transaction(conn):
        last = last_acts_for(conn, form.device_id)
        if form.kind == "issue":
            if tablet.status != "issued":
                raise ActRefused(
                    N_("the registry has %(device)s as %(status)s; only an issued tablet can be handed out"),
                    field="kind",
                    device=tablet.device_id,
                    status=tablet.status,
                )
            if last is not None and last[0] == "issue":
                raise ActRefused(
                    N_("%(device)s is out under act %(act)s; record its return first"),
                    field="kind",
                    device=tablet.device_id,
                    act=last[1],
                )
        else:
            if last is None or last[0] != "issue":
                raise ActRefused(
                    N_("%(device)s has no open issue act to close"), field="kind", device=tablet.device_id
                )
            if form.acted_at_ms <= last[2]:
                raise ActRefused(N_("the return must be dated after act %(act)s"), field="acted_at", act=last[1])
        count = conn.execute("SELECT count(*) FROM acts WHERE act_no LIKE ?", (f"{prefix}-{year}-%",)).fetchone()[0]
        act_no = f"{prefix}-{year}-{count + 1:05d}"
        conn.execute(
            "INSERT INTO acts (act_no, kind, device_id, usb_serial, institution, worker_id, worker_name, staff_name,"
            " accessories, condition_note, acted_at_ms, created_at_ms, created_by, registry_version, registry_status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                act_no,
                form.kind,
                tablet.device_id,
                tablet.usb_serial,
                tablet.institution,
                tablet.worker_id,
                form.worker_name,
                form.staff_name,
                json.dumps({"items": list(form.accessories), "other": form.other_accessories}, ensure_ascii=False),
                form.condition_note,
                form.acted_at_ms,
                now_ms,
                user_id,
                snapshot.version,
                tablet.status,
            ),
        )
        write_audit(conn, now_ms, user_id, "act.recorded", act_no=act_no, kind=form.kind, device_id=tablet.device_id)
    return act_no


def last_acts_for(conn: StaffConn, device_id: str) -> tuple[str, str, int] | None:
    row = conn.execute(
        "SELECT kind, act_no, acted_at_ms FROM acts WHERE device_id = ? ORDER BY acted_at_ms DESC, id DESC LIMIT 1",
        (device_id,),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def reconcile(acts: Mapping[str, Act], snapshot: RegistrySnapshot | None) -> list[CustodyCheck]:
    """One check per tablet known to the registry or to the acts, problems first."""
    tablets = {t.device_id: t for t in snapshot.tablets} if snapshot else {}
    out: list[CustodyCheck] = []
    for device_id in sorted(set(tablets) | set(acts)):
        act = acts.get(device_id)
        tablet = tablets.get(device_id)
        status = tablet.status if tablet else None
        ok, msgid, params = _judge(device_id, act, tablet.worker_id if tablet else None, status)
        out.append(CustodyCheck(device_id, act, status, ok, msgid, params))
    out.sort(key=lambda c: (c.ok, c.device_id))
    return out


def _judge(
    device_id: str, act: Act | None, worker_id: str | None, status: str | None
) -> tuple[bool, str, dict[str, object]]:
    if status is None:
        return False, N_("not in the current registry snapshot"), {}
    if act is None:
        if status == "issued":
            return False, N_("issued in the registry but no acceptance-transfer act is recorded"), {}
        return True, N_("%(status)s in the registry; no act recorded"), {"status": status}
    if act.kind == "issue":
        if status == "issued":
            if worker_id != act.worker_id:
                return (
                    False,
                    N_("act %(act)s names worker %(worker)s, the registry %(registry_worker)s"),
                    {"act": act.act_no, "worker": act.worker_id, "registry_worker": worker_id},
                )
            return True, N_("out under act %(act)s"), {"act": act.act_no}
        if status == "lost":
            return (
                False,
                N_("reported lost while out under act %(act)s; record a return act if it is found"),
                {"act": act.act_no},
            )
        return (
            False,
            N_("the registry has it %(status)s but act %(act)s still has it out: record the return act"),
            {"status": status, "act": act.act_no},
        )
    if status in ("returned", "revoked"):
        return True, N_("returned under act %(act)s"), {"act": act.act_no}
    return (
        False,
        # TRANSLATORS: the command in backquotes is typed by an operator: keep it as it is
        N_("act %(act)s records the return but the registry has it %(status)s: "
           "publish a snapshot with `sanaq-keys mark-returned %(device)s`"),
        {"act": act.act_no, "status": status, "device": device_id},
    )
