"""``tracker inspect``: a readable summary of an offline archive, ours or one the seeds wrote.

Reads ClearML offline session zips, Comet offline experiment zips and the JSON-lines files of
``tracker.sinks.jsonl`` with :mod:`tracker.archive` and returns the summary as text.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from tracker.archive import ClearMLArchive, CometArchive, read_archive


def summarize(path: str | Path) -> str:
    """The summary of the archive at ``path`` (raises ValueError if it is not one)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return _summarize_jsonl(path)
    archive = read_archive(path)
    if isinstance(archive, ClearMLArchive):
        return _summarize_clearml(path, archive)
    return _summarize_comet(path, archive)


def _section(title: str, lines: list[str]) -> list[str]:
    return [f"{title}:", *(f"  {line}" for line in lines or ["(none)"])]


def _kinds(actions: Counter[str]) -> list[str]:
    return [f"{kind:<22} {count:>8}" for kind, count in actions.most_common()]


def _runs(frame: pd.DataFrame | None) -> list[str]:
    if frame is None or frame.empty:
        return []
    lines = [f"{len(frame)} runs"]
    if "run_type" in frame:
        types = Counter(str(t) for t in frame["run_type"])
        lines.append("by type: " + ", ".join(f"{k} {v}" for k, v in types.most_common()))
    if "status" in frame:
        errors = frame[frame["status"] == "error"]
        lines.append(f"errors: {len(errors)}")
        lines.extend(
            f"  {row.get('name')}: {row.get('error')}" for _, row in errors.head(5).iterrows()
        )
    if "latency_s" in frame:
        latency = pd.to_numeric(frame["latency_s"], errors="coerce").dropna()
        if not latency.empty:
            lines.append(
                f"latency s: median {latency.median():.4f}, p95 {latency.quantile(0.95):.4f}, "
                f"max {latency.max():.4f}"
            )
    if "total_tokens" in frame:
        tokens = pd.to_numeric(frame["total_tokens"], errors="coerce").dropna()
        if not tokens.empty:
            lines.append(f"tokens: {int(tokens.sum())} total")
    if "parent_run_id" in frame:
        roots = frame["parent_run_id"].isna() | (frame["parent_run_id"].astype(str) == "None")
        lines.append(f"root runs (traces): {int(roots.sum())}")
    return lines


def _whole(parts: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame | None:
    """The parts of a table (flushes, rotations) as one table."""
    frames = [frame for _, frame in parts]
    return pd.concat(frames, ignore_index=True) if frames else None


def _media(items: list[dict[str, Any]]) -> list[str]:
    counts = Counter(f"{m.get('title')}" for m in items)
    return [f"{title}: {count} samples" for title, count in counts.most_common()]


def _summarize_clearml(path: Path, archive: ClearMLArchive) -> str:
    tables = archive.tables()
    task = archive.task or {}
    actions: Counter[str] = Counter()
    records = _whole(archive.table_parts("Action Records"))
    if records is not None and "action" in records:
        actions.update(str(a) for a in records["action"])
    runs = _whole(archive.table_parts("Runs"))
    if not actions:  # no table flushed: count the streamed console records instead
        for line in archive.text_lines():
            if line.startswith("{'action': '"):
                actions[line.split("'")[3]] += 1
    scalars = Counter(f"{s['title']}/{s['series']}" for s in archive.scalars())
    lines = [
        f"ClearML offline session {path.name}",
        f"task: {task.get('name')!r} (project {task.get('project_name', task.get('project'))!r}, "
        f"type {task.get('type')!r})",
        *_section("runs", _runs(runs)),
        *_section("events by kind", _kinds(actions)),
        *_section(
            "tables",
            [f"{t} / {s}: {len(f)} rows x {len(f.columns)}" for (t, s), f in tables.items()],
        ),
        *_section(
            "full tables (artifacts)",
            [f"{a['key']}: {a['metadata'].get('rows', '?')} rows" for a in archive.artifacts()],
        ),
        *_section("scalars", [f"{name}: {n} points" for name, n in scalars.most_common()]),
        *_section("media", _media(archive.media())),
        f"console lines: {len(archive.text_lines())}",
    ]
    return "\n".join(lines)


def _summarize_comet(path: Path, archive: CometArchive) -> str:
    assets = archive.assets()
    actions: Counter[str] = Counter()
    records = archive.action_records()
    if records:
        actions.update(str(row.get("action")) for row in records)
    else:
        actions.update(str(meta.get("action")) for _, meta in archive.texts() if meta)
    tables = archive.tables()
    metrics = Counter(str(m.get("metricName", m.get("name"))) for m in archive.metrics())
    texts = archive.texts()
    samples = len(archive.samples())
    lines = [
        f"Comet offline experiment {path.name}",
        f"tags: {', '.join(archive.tags()) or '(none)'}",
        *_section("runs", _runs(_whole(archive.table_parts("langchain-runs")))),
        *_section("events by kind", _kinds(actions)),
        *_section("tables", [f"{n}: {len(f)} rows x {len(f.columns)}" for n, f in tables.items()]),
        *_section("metrics", [f"{name}: {n} points" for name, n in metrics.most_common(20)]),
        *_section("assets", sorted(assets)),
        f"texts: {len(texts)}" + (f" in {samples} shared samples" if samples < len(texts) else ""),
    ]
    return "\n".join(lines)


def _summarize_jsonl(path: Path) -> str:
    kinds: Counter[str] = Counter()
    runs: list[dict[str, Any]] = []
    flushes = 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            if item.get("type") == "record":
                kinds[item["kind"]] += 1
            elif item.get("type") == "runs":
                runs.extend(item.get("runs", []))
            elif item.get("type") == "flush":
                flushes += 1
    frame = pd.DataFrame(runs) if runs else None
    if frame is not None:
        frame = frame.drop_duplicates("run_id", keep="last")  # open runs repeat per flush
    return "\n".join(
        [
            f"JSON-lines session {path.name}",
            *_section("runs", _runs(frame)),
            *_section("events by kind", _kinds(kinds)),
            f"flushes: {flushes}",
        ]
    )
