"""A ``langchain_asset`` (what a user passes to ``flush_tracker``) saved as JSON.

Legacy chains and agents have ``.save`` / ``.save_agent``; LCEL runnables have neither, so they
are written with langchain_core's own serialization (``dumpd``), which every Runnable supports.
The snapshot is plain data, so it can cross to a sink running in another process.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.redact import scrub
from workers.sanitize import to_jsonable


@dataclass(frozen=True)
class SavedAsset:
    """The asset's JSON text and its model parameters (as the Comet seed looks them up)."""

    json_text: str
    llm_parameters: dict[str, Any] = field(default_factory=dict)


def _json_text(asset: Any) -> str:
    """The asset as JSON text, its secret values replaced (the markers naming them are kept)."""
    text = _raw_json_text(asset)
    try:
        data = json.loads(text)
    except ValueError:  # a save() that wrote something else (YAML, …): scrub it as text
        return str(scrub(text))
    return json.dumps(scrub(data, keep_markers=True), indent=2, default=str)


def _raw_json_text(asset: Any) -> str:
    for method in ("save", "save_agent"):
        save = getattr(asset, method, None)
        if callable(save):
            with tempfile.TemporaryDirectory(prefix="tracker-asset-") as folder:
                path = Path(folder) / "model.json"
                try:
                    save(path)
                    return path.read_text(encoding="utf-8")
                except (ValueError, NotImplementedError, AttributeError, TypeError, OSError):
                    continue
    from langchain_core.load import dumpd

    try:
        data = dumpd(asset)
    except Exception:
        data = to_jsonable(asset)
    return json.dumps(data, indent=2, default=str)


def snapshot_asset(asset: Any) -> SavedAsset:
    """``asset`` as a :class:`SavedAsset` (returned as is if it already is one)."""
    if isinstance(asset, SavedAsset):
        return asset
    return SavedAsset(json_text=_json_text(asset), llm_parameters=llm_parameters(asset))


def llm_parameters(asset: Any) -> dict[str, Any]:
    """The model parameters of an asset, as the Comet seed looks them up (plus LCEL chains)."""
    if not asset:
        return {}
    try:
        if hasattr(asset, "agent"):
            llm = asset.agent.llm_chain.llm
        elif hasattr(asset, "llm_chain"):
            llm = asset.llm_chain.llm
        elif hasattr(asset, "llm"):
            llm = asset.llm
        else:
            # An LCEL sequence: its first language model step.
            steps = getattr(asset, "steps", None) or [asset]
            llm = next((s for s in steps if hasattr(s, "_llm_type")), asset)
        params = llm.dict() if hasattr(llm, "dict") else {}
    except Exception:
        return {}
    result = scrub(to_jsonable(params))
    return result if isinstance(result, dict) else {}
