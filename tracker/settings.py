"""Where logs go: a configured server, or the SDKs' offline archives (the embedded default)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_OFFLINE_DIR = Path("tracker-offline")


def clearml_configured() -> bool:
    """True when ClearML has server credentials (environment or a clearml.conf file)."""
    if os.environ.get("CLEARML_API_ACCESS_KEY") and os.environ.get("CLEARML_API_SECRET_KEY"):
        return True
    candidates = [os.environ.get("CLEARML_CONFIG_FILE"), "~/clearml.conf", "~/.clearml.conf"]
    return any(c and Path(c).expanduser().is_file() for c in candidates)


def comet_configured() -> bool:
    """True when Comet has an API key (COMET_API_KEY or a .comet.config file)."""
    if os.environ.get("COMET_API_KEY"):
        return True
    candidates = [os.environ.get("COMET_CONFIG"), "~/.comet.config", ".comet.config"]
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            text = Path(candidate).expanduser().read_text(encoding="utf-8", errors="replace")
            if "api_key" in text:
                return True
    return False


def resolve_offline(offline: bool | None, configured: bool) -> bool:
    """``offline`` if given; otherwise offline exactly when no server is configured."""
    return (not configured) if offline is None else bool(offline)


def resolve_offline_dir(offline_dir: str | os.PathLike[str] | None) -> Path:
    """An absolute folder for offline archives (default ``./tracker-offline``)."""
    return Path(offline_dir if offline_dir is not None else DEFAULT_OFFLINE_DIR).resolve()


def resolve_spool(spool: bool | str | os.PathLike[str] | None, offline_dir: Path) -> Path | None:
    """The spool root: ``offline_dir/spool`` for True, a given path, or None for no spool."""
    if spool is None or spool is False:
        return None
    if spool is True:
        return offline_dir / "spool"
    return Path(spool).resolve()
