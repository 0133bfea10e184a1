"""``tracker report ARCHIVE… -o report.html``: one self-contained HTML page people can look at.

Built from offline archives (ClearML session zips, Comet experiment zips, our JSON-lines files,
ours or the seeds') with :mod:`tracker.archive`, drawn with Plotly, whose JavaScript is inlined
once: the file opens anywhere, with no network. Sections:

- runs over time, per run type;
- the latency distribution per run type;
- tokens over time;
- the error rate over time and the slowest traces;
- the run tree of one trace (the slowest, or ``--trace``) as a timeline.

The runs come from our runs tables (every part: rotations and flushes, and the full copies of
long ones). The seeds' archives have no runs table: their action records give the events by
kind over the seed's step counter, and the report says what it cannot show.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tracker.archive import ClearMLArchive, read_archive

TITLE = "LangChain runs"


@dataclass
class Runs:
    """What the archives hold, as the report needs it."""

    runs: pd.DataFrame
    actions: pd.DataFrame
    sources: list[str] = field(default_factory=list)


def load(paths: list[Path]) -> Runs:
    """Every run and action record of ``paths`` (duplicated run rows: the last wins)."""
    runs: list[pd.DataFrame] = []
    actions: list[pd.DataFrame] = []
    sources: list[str] = []
    for path in paths:
        if path.suffix == ".jsonl":
            table, records = _jsonl(path)
            sources.append(f"{path.name} (JSON lines)")
        else:
            archive = read_archive(path)
            if isinstance(archive, ClearMLArchive):
                table = _concat(archive.table_parts("Runs"))
                records = _concat(archive.table_parts("Action Records"))
                sources.append(f"{path.name} (ClearML)")
            else:
                table = _concat(archive.table_parts("langchain-runs"))
                records = pd.DataFrame(archive.action_records())
                sources.append(f"{path.name} (Comet)")
        if table is not None and not table.empty:
            runs.append(table)
        if records is not None and not records.empty:
            actions.append(records)
    frame = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame()
    if not frame.empty:
        frame = frame.drop_duplicates("run_id", keep="last")  # open runs repeat per flush
        for column in ("start_time", "end_time", "latency_s", "total_tokens"):
            if column in frame:
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
        missing = frame["parent_run_id"].astype(str).isin(["None", "nan", ""])
        frame["parent_run_id"] = frame["parent_run_id"].astype(object).where(~missing, None)
    return Runs(
        frame, pd.concat(actions, ignore_index=True) if actions else pd.DataFrame(), sources
    )


def _concat(parts: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame | None:
    frames = [frame for _, frame in parts]
    return pd.concat(frames, ignore_index=True) if frames else None


def _jsonl(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            if item.get("type") == "runs":
                runs.extend(item.get("runs", []))
            elif item.get("type") == "record":
                records.append({"action": item.get("kind"), "time": item.get("time")})
    return pd.DataFrame(runs), pd.DataFrame(records)


def build(data: Runs, trace: str | None = None) -> str:
    """The report's HTML (self-contained)."""
    import plotly.express as px
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    sections: list[tuple[str, str]] = []
    runs = data.runs

    def figure(title: str, fig: Any, note: str = "") -> None:
        fig.update_layout(title=title, margin={"l": 40, "r": 20, "t": 50, "b": 40}, height=380)
        body = fig.to_html(full_html=False, include_plotlyjs=False)
        sections.append(
            (title, body + (f"<p class='note'>{html.escape(note)}</p>" if note else ""))
        )

    def text(title: str, message: str) -> None:
        sections.append((title, f"<p class='note'>{html.escape(message)}</p>"))

    if runs.empty:
        text(
            "Runs",
            "These archives hold no runs table (the seeds' handlers write none); the events "
            "by kind below come from their action records.",
        )
    else:
        runs = runs.assign(
            start=pd.to_datetime(runs["start_time"], unit="s", errors="coerce"),
            end=pd.to_datetime(runs["end_time"], unit="s", errors="coerce"),
        )
        figure(
            "Runs over time",
            px.histogram(runs, x="start", color="run_type", nbins=60),
            f"{len(runs)} runs, by the time they started.",
        )
        figure(
            "Latency per run type",
            px.box(runs.dropna(subset=["latency_s"]), x="run_type", y="latency_s", points=False),
            "Seconds from a run's start to its end.",
        )
        llm = runs[runs["run_type"].isin(["llm", "chat_model"])].dropna(subset=["end"])
        if "total_tokens" in llm and llm["total_tokens"].notna().any():
            llm = llm.sort_values("end").assign(cumulative=llm["total_tokens"].fillna(0).cumsum())
            figure("Tokens over time", px.line(llm, x="end", y="cumulative", markers=True))
        else:
            text("Tokens over time", "No LLM run reported token usage.")
        errors = runs.assign(error=(runs["status"] == "error").astype(float)).dropna(
            subset=["start"]
        )
        rate = errors.set_index("start")["error"].resample(_bucket(errors["start"])).mean()
        figure(
            "Error rate",
            go.Figure(go.Scatter(x=rate.index, y=rate.values, mode="lines+markers")),
            f"{int(errors['error'].sum())} failed runs of {len(errors)}; the share of runs "
            "started in each interval that failed.",
        )
        roots = runs[runs["parent_run_id"].isna()].sort_values("latency_s", ascending=False)
        slowest = roots.head(10)[["run_id", "name", "latency_s", "status", "start"]]
        sections.append(("Slowest traces", slowest.to_html(index=False, classes="table")))
        chosen = trace or (str(roots.iloc[0]["run_id"]) if not roots.empty else None)
        if chosen is not None:
            figure(f"Run tree of trace {chosen}", _tree(runs, chosen, go))
    if not data.actions.empty and "action" in data.actions:
        counts = data.actions["action"].astype(str).value_counts().reset_index()
        counts.columns = ["action", "events"]
        figure("Events by kind", px.bar(counts, x="action", y="events"))
    body = "\n".join(
        f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections
    )
    sources = ", ".join(html.escape(s) for s in data.sources)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{TITLE}</title><script>{get_plotlyjs()}</script><style>{_STYLE}</style>"
        f"</head><body><h1>{TITLE}</h1><p class='note'>From {sources}.</p>{body}</body></html>"
    )


def _bucket(times: pd.Series) -> str:
    """A resampling interval giving ~30 points over the span of ``times``."""
    span = (times.max() - times.min()).total_seconds() if len(times) else 0
    return f"{max(1, int(span / 30))}s"


def _tree(runs: pd.DataFrame, root: str, go: Any) -> Any:
    """The runs below ``root`` as a timeline: one bar per run, indented by depth."""
    children: dict[str, list[str]] = {}
    for _, row in runs.iterrows():
        parent = row["parent_run_id"]
        if parent is not None:
            children.setdefault(str(parent), []).append(str(row["run_id"]))
    by_id = {str(row["run_id"]): row for _, row in runs.iterrows()}
    order: list[tuple[int, str]] = []

    def walk(run: str, depth: int) -> None:
        order.append((depth, run))
        for child in sorted(children.get(run, []), key=lambda r: by_id[r]["start_time"]):
            walk(child, depth + 1)

    walk(root, 0)
    start = by_id[root]["start_time"]
    labels = [f"{'  ' * d}{by_id[r]['name']} ({by_id[r]['run_type']})" for d, r in order]
    return (
        go.Figure(
            go.Bar(
                y=labels,
                x=[by_id[r]["latency_s"] or 0 for _, r in order],
                base=[by_id[r]["start_time"] - start for _, r in order],
                orientation="h",
                marker_color=[
                    "crimson" if by_id[r]["status"] == "error" else "steelblue" for _, r in order
                ],
            )
        )
        .update_yaxes(autorange="reversed")
        .update_xaxes(title="seconds from the trace's start")
    )


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1100px}"
    "section{margin-bottom:2em}.note{color:#555}"
    "table.table{border-collapse:collapse}table.table td,table.table th{border:1px solid #ccc;"
    "padding:2px 6px}"
)


def write_report(paths: list[Path], output: Path, trace: str | None = None) -> Path:
    """Read ``paths``, write the report to ``output``; returns it."""
    output.write_text(build(load(paths), trace), encoding="utf-8")
    return output
