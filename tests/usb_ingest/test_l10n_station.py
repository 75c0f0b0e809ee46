# ruff: noqa: RUF001  (Kazakh and Russian expectations)
"""What the technician reads at the station, in the station's language (``language`` in usb-ingest.toml)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from runtime.toml_config import ConfigError
from usb_ingest.config import load_config
from usb_ingest.station_text import StationText
from usb_ingest.status import DeviceView, StatusView
from usb_ingest.status_view import render

from .images import Env, Gateway, export
from .test_usb_core_cli import cli

NOW = 1_760_000_000_000


def shown(view: StatusView, lang: str) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(render(view, now_ms=NOW, alive=False, text=StationText(lang)))
    return console.export_text()


VIEW = StatusView(
    station_id="ST-01", pid=1, updated_at_ms=NOW - 90_000, trust_state="ok", trust_version=7,
    trust_expires_at_ms=NOW + 3 * 86_400_000, spool_pending=1234, spool_pending_bytes=2_500_000,
    forward_state="waiting", forward_next_retry_ms=NOW + 30_000,
    devices=(DeviceView(devnode="/dev/sdb", state="reading", message="…", device_id="TAB-0001", batches_total=5,
                        batches_done=2),),
)


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("kk", ("Қосылған планшеттер", "Қабылдау қызметі жұмыс істемейді", "оқылуда", "жарамды (тізілім v7",
                "күтуде, келесі әрекет 30 с кейін", "1 234 пакет, 2,5 МБ", "Станция", "2 мин бұрын")),
        ("ru", ("Подключённые планшеты", "Служба приёма не работает", "чтение", "действителен (реестр v7",
                "ожидание повтора, следующая попытка через 30 с", "пакетов: 1 234, 2,5 МБ", "2 мин назад")),
        ("en", ("Connected tablets", "not running", "reading", "valid (registry v7", "waiting, next try in 30 s",
                "1,234 batches, 2.5 MB", "2 min ago")),
    ],
)
def test_the_status_view_speaks_the_stations_language(lang: str, words: tuple[str, ...]) -> None:
    text = " ".join(shown(VIEW, lang).split())
    for w in words:
        assert " ".join(w.split()) in text, (w, text)


def test_kazakh_view_has_no_english_headings() -> None:
    text = shown(VIEW, "kk")
    for english in ("Connected tablets", "Trust", "Forwarding", "Last delivery", "Updated", "ALARM"):
        assert english not in text


@pytest.mark.parametrize("value", ['"de"', '""', "1"])
def test_an_unknown_language_is_a_config_error(tmp_path: Path, value: str) -> None:
    path = tmp_path / "usb-ingest.toml"
    path.write_text(f"language = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="language"):
        load_config(path)


async def test_a_pull_and_the_status_in_kazakh(env: Env, gw: Gateway, tmp_path: Path) -> None:
    image = tmp_path / "tab.img"
    export(env, image, "TAB-0001", range(1, 4))
    config = env.write_config(tmp_path / "usb-ingest.toml", gw.url)
    config.write_text(config.read_text("utf-8").replace('language = "en"', 'language = "kk"'), encoding="utf-8")
    code, out, err = await cli("pull", str(image), "--config", str(config))
    assert code == 0, err
    assert "TAB-0001: complete - кезекке жаңа пакеттер: 3 (" in out
    assert "Планшетті ажыратуға болады." in out and "You may unplug" not in out
    status = json.loads((env.state_dir / "status.json").read_text("utf-8"))
    assert status["devices"][0]["message"].endswith("Планшетті ажыратуға болады.")
    code, out, _ = await cli("status", "--config", str(config))
    assert code == 0
    words = " ".join(out.split())  # the longer message (tablet + institution) wraps on an 80-column screen
    assert "Қосылған планшеттер" in words and "Планшетті ажыратуға болады." in words
    assert "Connected tablets" not in words
    assert '"event"' in err  # logs stay English JSON for journald
