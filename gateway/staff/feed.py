"""The live dashboard feed: one background refresher, many readers.

A single task (owned by the app's ``cleanup_ctx``) polls the census
store's change marker every ``refresh_interval_s`` and folds the new batches
into the tally (work in proportion to what arrived), once any staff page has
asked for the model: until then it does nothing, so a gateway process that
never serves the dashboard never reads the whole store into the tally (every
worker and every instance has its own feed). While at least one
server-sent-events stream is open (``watching``), it also rebuilds the model
when something changed (or ``full_refresh_s`` passed, so ages and colours move
on with the clock, or staff data changed and ``poke`` was called), bumps
``version`` and wakes every stream. The rebuild walks every counted person,
every list and every review case, so with no staff browser open it is not
done: a gateway storing sheets does not pay for a dashboard nobody looks at
(the cost grew with the store and stalled ingest, docs/benchmarks.md "scale
curve"). Pages and the JSON endpoint call ``current()``, which refreshes
first, so they are never older than the request. The HTML fragments of a version are rendered once per
language, when a reader of that language first asks for them. On PostgreSQL
``listen_postgres`` pokes it as well whenever any gateway instance stores
census data or changes staff data (ADR 0012).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import structlog

from gateway.context import GatewayContext

from .acts import last_acts, reconcile
from .config import StaffConfig
from .coverage import compute_coverage
from .dashboard import DashboardModel, build_model
from .db import StaffStorage
from .errors import StaffStoreError
from .lists import RespondentList, load_addition_ids, load_entry_ids, load_lists
from .queries import ReviewCaseRow, StaffQueries
from .review import (
    Counted,
    Decision,
    ListMatch,
    MatchDecision,
    apply_match_decisions,
    effective_persons,
    find_list_matches,
    listed_keys,
    load_decisions,
    load_match_decisions,
)
from .tally import CensusTally

__all__ = ["DashboardFeed"]

log = structlog.get_logger("sanaq.gateway.staff")

_CHUNK = 20_000


class DashboardFeed:
    def __init__(
        self,
        *,
        queries: StaffQueries,
        db: StaffStorage,
        ctx: GatewayContext,
        config: StaffConfig,
        render: Callable[[DashboardModel, str], dict[str, str]],
    ) -> None:
        self._queries = queries
        self._db = db
        self._ctx = ctx
        self._config = config
        self._render = render
        self._tally = CensusTally(utc_offset_ms=config.utc_offset_minutes * 60_000)
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._poke = asyncio.Event()
        self._stale = True
        self._marker: tuple[int, int | None] | None = None
        self._built_at_ms = 0
        self._lists: (
            tuple[
                list[RespondentList], dict[str, frozenset[str]], dict[str, frozenset[str]], dict[str, dict[str, str]]
            ]
            | None
        ) = None
        self.effective: dict[str, dict[str, Counted]] = {}
        self.cases: list[ReviewCaseRow] = []
        self.decisions: dict[int, Decision] = {}
        self.revisit: dict[str, set[str]] = {}
        self.list_matches: list[ListMatch] = []
        self.match_decisions: dict[tuple[int, int], MatchDecision] = {}
        self.model: DashboardModel | None = None
        self._fragments: dict[str, dict[str, str]] = {}
        self.version = 0
        self.closed = False
        self._watchers = 0
        self._active = False  # set by the first page or stream that needs the model
        self.cycles = 0  # passes of the background loop (tests wait on it)

    @property
    def tally(self) -> CensusTally:
        return self._tally

    def poke(self, *, lists_changed: bool = False) -> None:
        """Staff data changed: rebuild at the next chance."""
        if lists_changed:
            self._lists = None
        self._stale = True
        self._poke.set()

    @property
    def watchers(self) -> int:
        """Event streams open now; the model is rebuilt in the background only while this is > 0."""
        return self._watchers

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Held by an event stream for as long as it is open."""
        self._watchers += 1
        self._poke.set()
        try:
            yield
        finally:
            self._watchers -= 1

    async def current(self) -> DashboardModel:
        await self.refresh()
        if self.model is None:  # refresh either builds a model or raises
            raise StaffStoreError("the dashboard model has not been built")
        return self.model

    async def refresh(self) -> bool:
        """Rebuild if anything changed; True when a new version was published."""
        self._active = True
        async with self._lock:
            now = self._ctx.clock()
            trust = self._ctx.trust.current
            marker = (await self._queries.change_marker(), trust.snapshot.version if trust else None)
            due = now - self._built_at_ms >= self._config.full_refresh_s * 1000
            if self.model is not None and not self._stale and marker == self._marker and not due:
                return False
            self._stale = False
            self._marker = marker
            await self._fold_new_batches()
            model = await self._build(now)
            self.model, self._fragments = model, {}
            self._built_at_ms = now
            self.version += 1
        async with self._changed:
            self._changed.notify_all()
        return True

    def fragments(self, lang: str) -> dict[str, str]:
        """The current version's live sections in ``lang`` (rendered on first use)."""
        if self.model is None:
            return {}
        if lang not in self._fragments:
            self._fragments[lang] = self._render(self.model, lang)
        return self._fragments[lang]

    async def catch_up(self) -> None:
        """Fold the batches stored since the last fold into the tally, without rebuilding the model."""
        async with self._lock:
            await self._fold_new_batches()

    async def _fold_new_batches(self) -> None:
        while True:
            rows = await self._queries.batches_after(self._tally.high_water, _CHUNK)
            if not rows:
                break
            before = self._tally.high_water
            self._tally.add_batches(rows)
            self._tally.add_entries(await self._queries.list_entries_between(before, self._tally.high_water))
            if len(rows) < _CHUNK:
                break
        while True:
            persons = await self._queries.persons_after(self._tally.persons_high_water, _CHUNK)
            self._tally.add_persons(persons)
            if len(persons) < _CHUNK:
                return

    async def _build(self, now: int) -> DashboardModel:
        config = self._config
        trust = self._ctx.trust.current
        snapshot = trust.snapshot if trust else None
        if self._lists is None:
            self._lists = await self._db.run(
                lambda c: (load_lists(c), load_entry_ids(c), load_addition_ids(c), listed_keys(c))
            )
        lists, entries, additions, keys = self._lists
        acts = await self._db.run(last_acts)
        self.cases = await self._queries.review_cases()
        self.revisit = await self._queries.quarantined_entries()
        self.decisions = await self._db.run(load_decisions)
        effective = effective_persons(self._tally.persons, self.cases, self.decisions)
        self.list_matches = find_list_matches(effective, entries, keys)
        self.match_decisions = await self._db.run(load_match_decisions)
        apply_match_decisions(effective, self.list_matches, self.match_decisions)
        self.effective = effective
        review_open: dict[str, int] = {}
        for case in self.cases:
            if case.id not in self.decisions:
                review_open[case.institution_code] = review_open.get(case.institution_code, 0) + 1
        for m in self.list_matches:
            if (m.counted.batch_id, m.counted.index) not in self.match_decisions:
                review_open[m.institution_code] = review_open.get(m.institution_code, 0) + 1
        return build_model(
            now_ms=now,
            config=config,
            tally=self._tally,
            snapshot=snapshot,
            security=await self._queries.security_events(config.recent_rows),
            quarantine=await self._queries.quarantine_reasons(),
            custody=await self._queries.custody_pulls(config.recent_rows),
            custody_seen=await self._queries.custody_last_seen(),
            coverage=compute_coverage(
                lists,
                entries,
                {code: {e: c.category for e, c in got.items()} for code, got in self.effective.items()},
                regions={code: {e: c.region for e, c in got.items()} for code, got in self.effective.items()},
                review_open=review_open,
                additions=additions,
            ),
            checks=reconcile(acts, snapshot),
        )

    async def wait_newer(self, version: int, timeout_s: float) -> bool:
        """Wait until a version newer than ``version`` exists (True) or the timeout (False)."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version > version or self.closed), timeout_s)
            except TimeoutError:
                return False
        return self.version > version

    async def close(self) -> None:
        """Wake and end every event stream (called on shutdown, before connections are drained)."""
        self.closed = True
        async with self._changed:
            self._changed.notify_all()

    async def run(self) -> None:
        """The refresher loop; a failed refresh is logged and retried, never fatal."""
        while not self.closed:
            try:
                if self._watchers:
                    await self.refresh()
                elif self._active:
                    await self.catch_up()
            except Exception as e:  # the dashboard must not take the gateway down
                log.warning("staff.feed.refresh_failed", error=str(e), error_type=type(e).__name__)
            self.cycles += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self._config.refresh_interval_s)
            self._poke.clear()
