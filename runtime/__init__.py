"""Process plumbing shared by the programs: logging, systemd notification, TOML config loading, private files.

Holds no protocol logic and no trust decisions; ``gateway`` and ``usb_ingest``
use it so that both speak to journald and systemd the same way.
"""

from __future__ import annotations

__all__ = ["logs", "private_files", "sdnotify", "toml_config"]
