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


def summarize(path: str | Path, trace: str | None = None) -> str:
    """The summary of the archive at ``path`` (raises ValueError if it is not one).

    ``trace``: also draw that trace's run tree (a root run id, or ``"slowest"``).
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        lines, runs = _summarize_jsonl(path)
    else:
        archive = read_archive(path)
        if isinstance(archive, ClearMLArchive):
            lines, runs = _summarize_clearml(path, archive)
        else:
            lines, runs = _summarize_comet(path, archive)
    if trace is not None:
        lines += _section("trace", tree(runs, trace))
    return "\n".join(lines)


def tree(runs: pd.DataFrame | None, trace: str) -> list[str]:
    """One trace as an indented tree: each run's name, type, graph node, latency and status."""
    if runs is None or runs.empty:
        return ["(no runs table in this archive)"]
    frame = runs.drop_duplicates("run_id", keep="last")
    parent = frame["parent_run_id"].astype(str)
    roots = frame[frame["parent_run_id"].isna() | parent.isin(["None", "nan", ""])]
    if trace == "slowest":
        latency = pd.to_numeric(roots["latency_s"], errors="coerce")
        if latency.notna().sum() == 0:
            return ["(no finished trace)"]
        trace = str(roots.loc[latency.idxmax(), "run_id"])
    by_id = {str(row["run_id"]): row for _, row in frame.iterrows()}
    if trace not in by_id:
        return [f"(no run {trace} in this archive)"]
    children: dict[str, list[str]] = {}
    for run_id, row in by_id.items():
        children.setdefault(str(row["parent_run_id"]), []).append(run_id)
    lines: list[str] = []

    def walk(run_id: str, depth: int) -> None:
        row = by_id[run_id]
        node = row.get("node")
        where = f" [node {node}]" if isinstance(node, str) and node else ""
        latency = pd.to_numeric(row.get("latency_s"), errors="coerce")
        took = f"{latency:.3f}s" if pd.notna(latency) else "?"
        lines.append(
            f"{'  ' * depth}{row.get('name')} ({row.get('run_type')}){where} {took} "
            f"{row.get('status')}"
        )
        kids = children.get(run_id, [])
        for child in sorted(kids, key=lambda r: float(by_id[r].get("start_time") or 0)):
            walk(child, depth + 1)

    walk(trace, 0)
    return lines


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


def _summarize_clearml(
    path: Path, archive: ClearMLArchive
) -> tuple[list[str], pd.DataFrame | None]:
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
    series = [name for name, _ in archive.table_parts("Action Records")]
    flushes = sum(1 for name in series if not name.startswith("part "))
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
        # A flush with nothing new reports no table: ClearML's archive keeps no trace of it.
        f"flushes with tables: {flushes} (and {len(series) - flushes} rotations)",
    ]
    return lines, runs


def _summarize_comet(path: Path, archive: CometArchive) -> tuple[list[str], pd.DataFrame | None]:
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
    runs = _whole(archive.table_parts("langchain-runs"))
    uploads = [
        str((u.get("additional_params") or {}).get("fileName") or u.get("file_path"))
        for u in archive.uploads("asset")
    ]
    flushes = uploads.count("langchain-action_records.json")
    rotations = sum(1 for n in uploads if n.startswith("langchain-action_records.part"))
    lines = [
        f"Comet offline experiment {path.name}",
        f"tags: {', '.join(archive.tags()) or '(none)'}",
        *_section("runs", _runs(runs)),
        *_section("events by kind", _kinds(actions)),
        *_section("tables", [f"{n}: {len(f)} rows x {len(f.columns)}" for n, f in tables.items()]),
        *_section("metrics", [f"{name}: {n} points" for name, n in metrics.most_common(20)]),
        *_section("assets", sorted(assets)),
        f"texts: {len(texts)}" + (f" in {samples} shared samples" if samples < len(texts) else ""),
        f"flushes: {flushes} (and {rotations} rotations)",
    ]
    return lines, runs


def _summarize_jsonl(path: Path) -> tuple[list[str], pd.DataFrame | None]:
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
    lines = [
        f"JSON-lines session {path.name}",
        *_section("runs", _runs(frame)),
        *_section("events by kind", _kinds(kinds)),
        f"flushes: {flushes}",
    ]
    return lines, frame
