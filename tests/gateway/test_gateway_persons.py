"""Person-level counting in the census store, on both engines: one list entry counts once, a second
sheet for it is stored and opens a review case; a matching person key under another entry opens a
possible-duplicate case; two store objects on one database (two gateway instances) agree."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from gateway.person_key import normalise_name, person_key
from gateway.store import IngestItem, NonceUse, Stored, StoredSheet

from .pg_cluster import pg_cluster  # noqa: F401 - fixture
from .test_gateway_store_contract import FAR, KEY, Engine, engine, opened  # noqa: F401 - fixture

CODE = "AB-000001"


def sheet_body(
    entry: str, surname: str = "Серікова", given: str = "Айгүл", birth: str = "1950-03-14"
) -> dict[str, Any]:
    return {
        "form": "institution",
        "institution_code": CODE,
        "respondent_list_entry": entry,
        "source": "interview",
        "address": {"region": "KZ-71"},
        "persons": [{"surname": surname, "given_name": given, "birth_date": birth}],
    }


def batch(device_id: str, seq: int, bodies: list[dict[str, Any]], *, road: str = "online") -> IngestItem:
    envelope = os.urandom(64)
    sheets = tuple(
        StoredSheet(
            i,
            f"S{seq}-{i}",
            CODE,
            b["respondent_list_entry"],
            repr(b),
            person_key=person_key(b),
            source=b["source"],
            region="KZ-71",
        )
        for i, b in enumerate(bodies)
    )
    return IngestItem(
        device_id=device_id,
        seq=seq,
        batch_hash=hashlib.sha256(envelope).digest(),
        envelope=envelope,
        sealed_at_ms=1_700_000_000_000,
        request_created_s=1_700_000_000,
        received_at_ms=1_700_000_000_000 + seq,
        road=road,
        signer_key_id=KEY,
        schema="census-sheet/1",
        receipt=b"r" + os.urandom(8),
        sheets=sheets,
        quarantined=(),
        nonce=NonceUse(KEY, os.urandom(12).hex(), FAR),
    )


def test_normalisation_joins_kazakh_russian_and_latin_spellings() -> None:
    assert normalise_name("Серікова") == normalise_name("Серикова") == normalise_name("SERİKOVA") == "serikova"
    assert normalise_name("Жұмабек") == normalise_name("Jumabek") == normalise_name("Zhumabek")
    assert normalise_name("Юлия") == normalise_name("Yulia")
    assert normalise_name("Ахметов") == normalise_name("Akhmetov") == normalise_name("Ahmetov")
    assert normalise_name("Қасымов") == normalise_name("Qasymov") == normalise_name("Kasymov")
    assert normalise_name("Нұр-Сұлтан") == normalise_name("nur sultan")
    assert normalise_name("Серікова") != normalise_name("Серіков")
    assert person_key(sheet_body("AB-000001/00001")) == person_key(
        sheet_body("AB-000001/00002", surname="Serikova", given="Aigul")
    )
    assert person_key(sheet_body("AB-000001/00001")) != person_key(sheet_body("AB-000001/00001", birth="1950-03-15"))
    assert person_key({"form": "household", "persons": []}) is None


async def test_second_sheet_for_an_entry_is_stored_and_opens_one_case(engine: Engine) -> None:  # noqa: F811 - the imported fixture
    async with opened(engine) as store:
        online = batch("web:SE-01", 1, [sheet_body(f"{CODE}/00001")], road="web:SE-01")
        tablet = batch("TAB-0001", 1, [sheet_body(f"{CODE}/00001"), sheet_body(f"{CODE}/00002", surname="Бек")])
        assert isinstance(await store.ingest(online), Stored)
        assert isinstance(await store.ingest(tablet), Stored)
        counts = await store.counts()
        assert (counts["sheets"], counts["persons"], counts["review_cases"]) == (3, 2, 1)
        cases = await engine.rows(
            "SELECT r.kind, r.entry_id, f.device_id, s.device_id FROM review_cases r"
            " JOIN batches f ON f.id = r.first_batch_id JOIN batches s ON s.id = r.second_batch_id"
        )
        assert cases == [("same-entry", f"{CODE}/00001", "web:SE-01", "TAB-0001")]
        persons = await store.institution_persons(CODE)
        assert [(p.entry_id, p.road, p.device_id, p.more_sheets) for p in persons] == [
            (f"{CODE}/00001", "web:SE-01", "web:SE-01", 1),
            (f"{CODE}/00002", "online", "TAB-0001", 0),
        ]


async def test_same_person_under_another_entry_is_a_possible_duplicate(engine: Engine) -> None:  # noqa: F811 - the imported fixture
    async with opened(engine) as store:
        await store.ingest(batch("TAB-0001", 1, [sheet_body(f"{CODE}/00001")]))
        await store.ingest(batch("TAB-0002", 1, [sheet_body(f"{CODE}/00099", surname="Serikova", given="Aigul")]))
        counts = await store.counts()
        assert (counts["persons"], counts["review_cases"]) == (2, 1)  # never merged: both entries count
        assert await engine.rows("SELECT kind, entry_id FROM review_cases") == [("possible-duplicate", f"{CODE}/00001")]


async def test_two_instances_racing_on_one_entry_count_it_once(engine: Engine) -> None:  # noqa: F811 - the imported fixture
    async with opened(engine) as a, opened(engine) as b:
        for round_no in range(1, 6):
            entry = f"{CODE}/{round_no:05d}"
            born = f"19{50 + round_no}-01-01"
            items = [batch(f"TAB-{n}", round_no, [sheet_body(entry, surname=f"S{n}", birth=born)]) for n in range(4)]
            outcomes = await asyncio.gather(*(s.ingest(i) for s, i in zip((a, b, a, b), items, strict=True)))
            assert all(isinstance(o, Stored) for o in outcomes)
        counts = await a.counts()
        assert (counts["sheets"], counts["persons"], counts["review_cases"]) == (20, 5, 15)
        per_entry = await engine.rows("SELECT entry_id, count(*) FROM review_cases GROUP BY entry_id ORDER BY 1")
        assert [n for _, n in per_entry] == [3] * 5
