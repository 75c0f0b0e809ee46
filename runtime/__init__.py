"""Process plumbing shared by the two services: logging, systemd notification, TOML config loading.

Holds no protocol logic and no trust decisions; ``gateway`` and ``usb_ingest``
use it so that both speak to journald and systemd the same way.
"""

from __future__ import annotations

__all__ = ["logs", "sdnotify", "toml_config"]
