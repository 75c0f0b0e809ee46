# Sanaq Sync: every target sets up what it needs through `setup`, which is idempotent.
SHELL := /bin/bash
PY_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests and the demo use (installed only when missing):
#   mtools, dosfstools     FAT images checked with mdir/mcopy
#   umockdev, gir1.2-umockdev-1.0, python3-gi   the real libudev stack under a test bed
#   systemd, python3-venv  systemd-analyze for the unit tests; the venv `make install` builds
#   postgresql             initdb/pg_ctl for the throwaway cluster of the PostgreSQL store tests
#   chromium, chromium-driver  the real-browser test of the staff dashboard
#   fonts-dejavu-core      a TTF with Cyrillic and the Kazakh letters for act PDFs and access-code slips
#   poppler-utils          pdftotext/pdffonts/pdftoppm: the PDFs' text layer, embedded fonts and rendering (tests)
#   fiu-utils              libfiu I/O fault injection into the real gateway process (tests/faults)
#   poppler-utils          pdftotext/pdftoppm: the text layer and a raster of participation certificate PDFs
#   tesseract-ocr, -kaz, -rus  OCR of that raster: the Kazakh letters are drawn, not tofu
#   strace                 SIGKILL of the real USB pull at every syncfs/rename/fsync (tests/faults)
#   tmux                   the technician's `status --watch` screen tested in a real terminal
#   haproxy                the TCP load balancer of the national topology test (ops/haproxy.cfg)
DEB_PACKAGES := mtools dosfstools umockdev gir1.2-umockdev-1.0 python3-gi libudev1 systemd python3-venv postgresql \
	chromium chromium-driver fonts-dejavu-core fiu-utils poppler-utils tesseract-ocr tesseract-ocr-kaz \
	tesseract-ocr-rus strace tmux haproxy

.PHONY: .debs-ok setup demo test lint vectors bench faults clean install uninstall

setup: $(STAMP) .debs-ok

.debs-ok:  # phony on purpose: a cheap check every time
	@scripts/ensure-debian-packages $(DEB_PACKAGES)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: setup
	@$(PY) -m scripts.demo

lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

# The suite (pytest's addopts deselect `slow`), then the slow `make install` test, which builds the real
# virtualenv with pip (~1-2 min), and the 50,000-sheet tablet on the USB road (~3-4 min): together well under
# 20 min on 2 cores. The other slow tests (soaks) are in `make faults`.
test: setup lint
	@$(VENV)/bin/pytest -q
	@$(VENV)/bin/pytest -q -m slow tests/systemd tests/usb_ingest/test_usb_fifty_thousand.py

# Benchmarks against same-run baselines (the gateway over TLS as deployed and over plain HTTP, each against a
# bare aiohttp server on the same configuration); every result records its provenance and the report refuses
# to mix runs (bench/report.py). Full: ~30 GB of temporary disk for the 5 M-sheet store (SQLite,
# then PostgreSQL: one at a time); QUICK=1 for a short run.
bench: setup
	@$(PY) -m pip install -q -e '.[bench]'
	@$(PY) -m bench.run_all $(if $(QUICK),--quick,)

# The fault and attack suite with its soak variants. Each test appends what it measured to
# build/fault-ledger.jsonl; a run that wrote a ledger becomes docs/fault-ledger.jsonl (commit it) and
# the summary table of docs/threat-model.md is regenerated from it, whether or not every test passed.
# Fails unless every test passed and batches lost, duplicates, crashes and forgeries accepted are all 0.
# tests/scripts/test_scripts_fault_summary.py (normal suite) fails when the table and the ledger differ.
faults: setup
	@mkdir -p build
	@rm -f build/fault-ledger.jsonl
	@SANAQ_FAULT_LEDGER=build/fault-ledger.jsonl $(VENV)/bin/pytest -q -p no:randomly tests/faults -m "slow or not slow"; \
	rc=$$?; test -s build/fault-ledger.jsonl || exit $$(( rc ? rc : 1 )); \
	cp build/fault-ledger.jsonl docs/fault-ledger.jsonl; \
	$(PY) scripts/fault_summary.py docs/fault-ledger.jsonl docs/threat-model.md --check; check=$$?; \
	exit $$(( rc ? rc : check ))

vectors: setup
	@$(PY) vectors/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-run

# install / uninstall (DESTDIR, PREFIX): units, udev rules, sysusers, tmpfiles, programs
include systemd/install.mk
