"""Comet text samples shared by several records, and how to split them back.

comet_ml logs each ``log_text`` as an asset upload of its own (a temporary file and a message);
its offline writer manages about 1,000 of them a second. ``TrackerCallbackHandler``'s Comet
sink (``text_sample="batch"``) logs one sample per batch instead: the texts joined by newlines,
so the sample reads well in Comet's Text tab, and in its metadata, per record, the step, the
text's length in characters and the seed's metadata, so each record can be split back out
(:func:`split_sample`, used by ``tracker inspect``).

The records are one JSON text in the metadata, not a list: comet_ml's offline writer encodes
each message's metadata with the stdlib's pure-Python encoder (``json.dump`` to a file, after
its ``nan2None`` walk), which took 12% of the tracker worker's CPU on LangGraph rounds
(benchmarks/analysis.md, issue 15); a single string it copies in one step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from workers.json_text import json_text

#: How texts go to Comet: a sample per text (the seed's way), or one shared per batch.
TEXT_SAMPLE_MODES = ("record", "batch")
#: The metadata key that marks a shared sample and holds its records.
RECORDS_KEY = "tracker_records"
#: A shared sample holds at most this many characters of text (several samples past it).
SAMPLE_CHARS = 1_000_000

Sample = tuple[str, dict[str, Any], int]


def shared_samples(texts: list[Sample]) -> Iterator[Sample]:
    """``(text, metadata, step)`` triples packed into as few shared samples as fit."""
    texts = [(t if isinstance(t, str) else str(t), m, s) for t, m, s in texts]
    start = 0
    while start < len(texts):
        size, end = 0, start
        while end < len(texts) and (end == start or size + len(texts[end][0]) <= SAMPLE_CHARS):
            size += len(texts[end][0]) + 1
            end += 1
        part = texts[start:end]
        records = [
            {"step": step, "length": len(text), "metadata": metadata}
            for text, metadata, step in part
        ]
        yield "\n".join(text for text, _, _ in part), {RECORDS_KEY: json_text(records)}, part[0][2]
        start = end


def split_sample(text: str, metadata: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A sample's records as ``(text, metadata)``: a shared one split, any other as it is."""
    records = metadata.get(RECORDS_KEY) if isinstance(metadata, dict) else None
    if isinstance(records, str):  # JSON text; archives written before it was, a list
        try:
            records = orjson.loads(records)
        except orjson.JSONDecodeError:
            records = None
    if not isinstance(records, list):
        return [(text, metadata)]
    out: list[tuple[str, dict[str, Any]]] = []
    position = 0
    for record in records:
        length = int(record.get("length", 0))
        out.append((text[position : position + length], dict(record.get("metadata") or {})))
        position += length + 1  # the newline between two texts
    return out
