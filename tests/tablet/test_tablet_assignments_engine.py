"""The sync engine's assignments step against a real gateway: deltas applied, a gateway without lists
passed over, a document that does not verify kept out without stopping delivery, an older version refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tablet.assignments import AssignmentBook
from tablet.client import SyncEngine
from tablet.outbox_worker import OutboxWorker
from tablet.sync_policy import RetryPolicy, SyncConfig
from tests.gateway.harness import World, now_ms
from wire import Assignment

from .test_tablet_sync_bed import GatewayBed, Sleeps, fill_and_pack, world_identity

CODE = "AB-000001"  # the harness tablets' institution


class Source:
    """An assignment source the test steers: ``entries`` per version, or a broken document."""

    def __init__(self) -> None:
        self.version = 0
        self.entries: dict[str, Assignment] = {}
        self.wrong_institution = False
        self.asked: list[int] = []

    def set(self, number: int, status: str, at: int | None = None) -> None:
        self.version += 1
        entry_id = f"{'CD-000009' if self.wrong_institution else CODE}/{number:05d}"
        self.entries[entry_id] = Assignment(entry_id, status, at, "Ким", "Ли", "", "1960-01-01", self.version)

    async def assignments(self, *, institution: str, device_id: str, since: int) -> tuple[int, int, list[Assignment]]:
        self.asked.append(since)
        since = 0 if since > self.version else since
        return self.version, since, [e for e in self.entries.values() if e.changed > since]


@pytest.fixture
def world() -> World:
    return World.make(n_tablets=1)


@pytest.fixture
async def bed(world: World, tmp_path: Path) -> AsyncIterator[GatewayBed]:
    gateway = await GatewayBed.of_world(world, tmp_path / "census.db").start()
    yield gateway
    await gateway.stop()


async def sync(world: World, bed: GatewayBed, home: Path) -> tuple[str, AssignmentBook | None]:
    identity = world_identity(world)
    config = SyncConfig(gateway_url=bed.url, pack=True, max_per_batch=5, retry=RetryPolicy(max_attempts=2))
    worker = await OutboxWorker.open(home / "outbox.db", device_id=identity.device_id, now_ms=now_ms())
    async with worker, SyncEngine(identity, worker, config, sleep=Sleeps(), assignments_home=home) as engine:
        report = await engine.sync_once()
        return report.outcome, engine.assignments


async def test_whole_list_then_deltas_then_refusals(world: World, bed: GatewayBed, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    outcome, book = await sync(world, bed, home)  # no source: 503, passed over
    assert outcome == "complete" and book is not None and book.institution is None
    source = Source()
    bed.ctx.assignments = source
    source.set(1, "open")
    source.set(2, "open")
    outcome, book = await sync(world, bed, home)
    assert (
        outcome == "complete"
        and book is not None
        and (book.version, sorted(book.entries)) == (2, [f"{CODE}/00001", f"{CODE}/00002"])
    )
    source.set(1, "enumerated-online", at=now_ms())
    source.set(2, "withdrawn")
    fill_and_pack(home / "outbox.db", world_identity(world), 3, pack=False)
    outcome, book = await sync(world, bed, home)
    assert outcome == "complete" and source.asked[-1] == 2  # only the delta since the held version
    assert book is not None and book.version == 4 and list(book.entries) == [f"{CODE}/00001"]
    assert book.entries[f"{CODE}/00001"].enumerated
    assert AssignmentBook.load(home).entries == book.entries  # kept on disk

    source.wrong_institution = True
    source.set(3, "open")
    fill_and_pack(home / "outbox.db", world_identity(world), 2, start=3, pack=False)
    with capture_logs() as logs:
        outcome, book = await sync(world, bed, home)
    assert outcome == "complete" and book is not None and book.version == 4  # delivered; list kept
    assert any(e["event"] == "sync.assignments.refused" for e in logs)
    assert len(bed.stored("TAB-0001")) == 2

    source.wrong_institution = False
    source.entries.clear()
    source.version = 1  # a gateway that went back in time
    source.set(9, "open")
    source.version = 2
    with capture_logs() as logs:
        outcome, book = await sync(world, bed, home)
    assert book is not None and book.version == 4 and f"{CODE}/00009" not in book.entries
    assert any(e["event"] == "sync.assignments.rollback" for e in logs)


def test_a_delta_of_another_institution_is_not_applied(tmp_path: Path) -> None:
    from wire import Assignments

    book = AssignmentBook(tmp_path / "assignments.json", CODE, 5, None, {})

    def doc(institution: str, since: int, version: int) -> Assignments:
        entry = Assignment(f"{institution}/00001", "open", None, "Ким", "Ли", "", "1960-01-01", version)
        return Assignments("TAB-0001", institution, 1, version, since, (entry,), b"")

    assert book.apply(doc("CD-000002", 5, 7), now_ms=1) == "stale"  # moved tablet: versions are per institution
    assert book.apply(doc(CODE, 3, 7), now_ms=1) == "stale"
    assert book.apply(doc(CODE, 0, 4), now_ms=1) == "rollback"
    assert book.apply(doc("CD-000002", 0, 2), now_ms=1) == "replaced" and book.institution == "CD-000002"
    assert book.apply(doc("CD-000002", 2, 3), now_ms=1) == "updated" and book.version == 3
