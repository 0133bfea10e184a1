"""Saving a ``langchain_asset`` (what a user passes to ``flush_tracker``) to a JSON file.

Legacy chains and agents have ``.save`` / ``.save_agent``; LCEL runnables have neither, so they
are written with langchain_core's own serialization (``dumpd``), which every Runnable supports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workers.sanitize import to_jsonable


def save_asset(asset: Any, path: Path) -> Path:
    """Write ``asset`` to ``path`` as JSON, the best way it supports; returns ``path``."""
    for method in ("save", "save_agent"):
        save = getattr(asset, method, None)
        if callable(save):
            try:
                save(path)
                return path
            except (ValueError, NotImplementedError, AttributeError, TypeError):
                continue
    from langchain_core.load import dumpd

    try:
        data = dumpd(asset)
    except Exception:
        data = to_jsonable(asset)
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    return path


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
    result = to_jsonable(params)
    return result if isinstance(result, dict) else {}
