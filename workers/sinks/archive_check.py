"""An offline archive counts as written only once it opens: a full disk leaves a truncated zip."""

from __future__ import annotations

import zipfile
from pathlib import Path


class ArchiveError(RuntimeError):
    """The backend's offline archive is missing or unreadable."""


def verify_archive(path: Path, backend: str) -> None:
    """Raise :class:`ArchiveError` unless ``path`` is a complete zip (every member's CRC)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except FileNotFoundError as exc:
        raise ArchiveError(f"the {backend} SDK wrote no offline archive at {path}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ArchiveError(
            f"the {backend} offline archive at {path} is unreadable ({exc}); a full disk or a "
            "size limit cut it short"
        ) from exc
    if bad is not None:
        raise ArchiveError(f"the {backend} offline archive at {path} is corrupt (member {bad})")
