"""Secrets never reach a backend (or a spool): the default scrubber and the ``redact=`` hook.

Real chains whose model holds API keys (a SecretStr field, a plain ``api_key`` field that
LangChain's ``dumpd`` puts in its repr), inputs and metadata with keys, passwords, bearer tokens
and a SecretStr, into the real SDKs' offline archives; then every byte written below the
offline folder (both archives, unzipped, and anything else such as a spool) is searched for
the secret values.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import Generation, LLMResult
from langchain_core.prompts import PromptTemplate
from pydantic import SecretStr

from tracker import ClearMLCallbackHandler, CometCallbackHandler
from tracker.archive import read_clearml_archive, read_comet_archive
from workers.event import Kind
from workers.records import Record
from workers.redact import is_secret_key, scrub_text

FIELD_SECRET = "sk-fieldsecret0123456789ABCDEFabcdef"  # a SecretStr field of the model
PLAIN_FIELD_KEY = "plain-field-key-7c1e9d"  # a plain str api_key field: dumpd's repr shows it
INPUT_KEY = "sk-inputkey0123456789ABCDEFabcdef0000"  # chain input under "api_key"
PASSWORD = "hunter2-correct-horse-battery"  # under "password": no recognisable shape
SECRET_STR = "secretstr-in-inputs-31415"  # pydantic SecretStr in the chain inputs
BEARER = "bearer-token-value-2718281828"  # "Authorization: Bearer ..." in metadata
ACCESS_TOKEN = "access-token-value-161803"  # a tool's dict input
TEXT_KEY = "sk-textkey0123456789ABCDEFabcdef1111"  # inside free text
ENV_NAME = "OPENAI_API_KEY"  # a serialized secret marker's id (not a value, still hidden)
SECRETS = (
    FIELD_SECRET,
    PLAIN_FIELD_KEY,
    INPUT_KEY,
    PASSWORD,
    SECRET_STR,
    BEARER,
    ACCESS_TOKEN,
    TEXT_KEY,
)
VISIBLE = "Eiffel-tower-visible-topic"  # non-secret text that must be there (no vacuous grep)
ANSWER = "It is in Paris."


class KeyedLLM(FakeListLLM):
    """A fake LLM configured the way real ones are: with API keys."""

    openai_api_key: SecretStr = SecretStr("")
    api_key: str = ""


def keyed_chain() -> Any:
    """prompt | an LLM holding keys | parser."""
    llm = KeyedLLM(
        responses=[ANSWER], openai_api_key=SecretStr(FIELD_SECRET), api_key=PLAIN_FIELD_KEY
    )
    return PromptTemplate.from_template("Tell me about {topic}") | llm | StrOutputParser()


def drive_secrets(handler: Any) -> None:
    """A real chain and direct callbacks, all carrying secrets somewhere."""
    config: Any = {
        "callbacks": [handler],
        "metadata": {"authorization": f"Bearer {BEARER}", "openai_api_key": INPUT_KEY},
        "tags": ["secrets-test"],
    }
    inputs = {
        "topic": VISIBLE,
        "api_key": INPUT_KEY,
        "password": PASSWORD,
        "creds": SecretStr(SECRET_STR),
        "nested": {"openai_api_key": INPUT_KEY, "headers": {"Authorization": f"Bearer {BEARER}"}},
    }
    assert keyed_chain().invoke(inputs, config=config) == ANSWER
    run = uuid.uuid4()
    handler.on_tool_start(
        {"name": "http"}, "GET /", run_id=run, inputs={"access_token": ACCESS_TOKEN, "q": VISIBLE}
    )
    handler.on_tool_end(f"called with token access_token={ACCESS_TOKEN}", run_id=run)
    handler.on_text(f"my key is {TEXT_KEY} and password: {PASSWORD}", run_id=uuid.uuid4())
    handler.on_custom_event(
        "config", {"key": {"lc": 1, "type": "secret", "id": [ENV_NAME]}}, run_id=uuid.uuid4()
    )
    llm_run = uuid.uuid4()
    handler.on_llm_start({"name": "m"}, [f"{VISIBLE} prompt"], run_id=llm_run)
    handler.on_llm_new_token("token-kept", run_id=llm_run)
    handler.on_llm_end(
        LLMResult(
            generations=[[Generation(text="fine")]],
            llm_output={
                "token_usage": {"total_tokens": 12, "prompt_tokens": 5, "completion_tokens": 7},
                "max_tokens": 100,
            },
        ),
        run_id=llm_run,
    )


def every_byte(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder``, zips opened member by member: name -> content."""
    files: dict[str, bytes] = {}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        files[str(path)] = data
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        files[f"{path}!{info.filename}"] = archive.read(info)
    return files


def assert_no_secret(files: dict[str, bytes]) -> None:
    """No secret value in any file, as UTF-8 or JSON-escaped."""
    assert files
    for name, data in files.items():
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret!r} leaked into {name}"


def make(backend: str, offline_dir: Path, **kwargs: Any) -> Any:
    """A streaming handler of ``backend`` writing below ``offline_dir``."""
    if backend == "clearml":
        return ClearMLCallbackHandler(
            task_name="secrets", stream_logs=True, offline_dir=offline_dir, **kwargs
        )
    return CometCallbackHandler(name="secrets", stream_logs=True, offline_dir=offline_dir, **kwargs)


def flush(handler: Any) -> None:
    """Finish the handler's session and check nothing was lost."""
    if isinstance(handler, ClearMLCallbackHandler):
        result = handler.flush_tracker(name="s", finish=True, timeout=120)
    else:
        result = handler.flush_tracker(finish=True, timeout=120)
    assert result.ok, result
    stats = handler.stats()
    assert stats["enqueued"] == stats["processed"] and stats["dropped"] == 0, stats


def all_text(backend: str, path: Path) -> str:
    """Everything an archive holds, as one string (rows, texts, tables)."""
    return "\n".join(data.decode("utf-8", "replace") for data in every_byte(path.parent).values())


@pytest.mark.parametrize("backend", ["clearml", "comet"])
def test_no_secret_reaches_the_offline_archives(backend: str, offline_dir: Path):
    handler = make(backend, offline_dir)
    drive_secrets(handler)
    flush(handler)

    files = every_byte(offline_dir)
    assert any(name.endswith(".zip") for name in files)
    assert_no_secret(files)
    text = all_text(backend, handler.archive_path)
    assert VISIBLE in text and ANSWER in text  # the data is there, the secrets are not
    assert "[REDACTED]" in text and ENV_NAME not in text
    # Not secrets: token counts, max_tokens, the streamed token.
    if backend == "clearml":
        actions = read_clearml_archive(handler.archive_path).tables()[("Action Records", "s")]
        ends = actions[actions["action"] == "on_llm_end"]
        assert list(ends["token_usage_total_tokens"].dropna()) == [12]
        assert list(ends["max_tokens"].dropna()) == [100]
    else:
        archive = read_comet_archive(handler.archive_path)
        rows = json.loads(archive.assets()["langchain-action_records.json"][0])
        ends = [r for r in rows if r["action"] == "on_llm_end" and "max_tokens" in r]
        assert ends and ends[0]["token_usage_total_tokens"] == 12 and ends[0]["max_tokens"] == 100
    assert "token-kept" in text


def test_redact_hook_drops_and_edits_records(offline_dir: Path):
    seen: list[Kind] = []

    def hook(record: Record) -> Record | None:
        seen.append(record.kind)
        if record.kind is Kind.TEXT and "DROP-ME" in record.fields["text"]:
            return None
        if record.kind is Kind.TEXT:
            record.fields["text"] = record.fields["text"].replace("Paris", "P***")
            record.fields["reviewed"] = "yes"
        if record.kind is Kind.CHAIN_START:
            record.fields["inputs"].pop("topic", None)  # the hook hides a field of its own
        return record

    handlers = [make(b, offline_dir, redact=hook) for b in ("clearml", "comet")]
    for handler in handlers:
        handler.on_text("DROP-ME please", run_id=uuid.uuid4())
        handler.on_text("Paris is nice", run_id=uuid.uuid4())
        assert keyed_chain().invoke({"topic": VISIBLE}, config={"callbacks": [handler]}) == ANSWER
        flush(handler)
        assert handler.stats()["redacted_dropped"] == 1
        assert handler.stats()["redact_errors"] == 0
    assert Kind.CHAIN_START in seen and Kind.LLM_END in seen
    clearml = read_clearml_archive(handlers[0].archive_path)
    lines = "\n".join(clearml.text_lines())
    comet_texts = [t for t, _ in read_comet_archive(handlers[1].archive_path).texts()]
    for text in (lines, "\n".join(comet_texts)):
        assert "DROP-ME" not in text
        assert "P*** is nice" in text and "Paris is nice" not in text
        assert VISIBLE not in text.replace(f"Tell me about {VISIBLE}", "")  # only in the prompt
    assert "'reviewed': 'yes'" not in lines  # ClearML's on_text row keeps the seed's keys
    assert "P*** is nice" in comet_texts


def test_a_failing_redact_hook_withholds_the_record_and_counts_it(
    offline_dir: Path, caplog: pytest.LogCaptureFixture
):
    def hook(record: Record) -> Record | None:
        if record.kind is Kind.TEXT:
            raise ValueError(f"hook bug near {record.fields['text']}")
        if record.kind is Kind.CUSTOM_EVENT:
            return "not a record"  # type: ignore[return-value]
        return record

    handler = make("comet", offline_dir, redact=hook)
    handler.on_text(f"password: {PASSWORD}", run_id=uuid.uuid4())
    handler.on_text("second", run_id=uuid.uuid4())
    handler.on_custom_event("ev", {"x": 1}, run_id=uuid.uuid4())
    assert keyed_chain().invoke({"topic": VISIBLE}, config={"callbacks": [handler]}) == ANSWER
    flush(handler)
    stats = handler.stats()
    assert stats["redact_errors"] == 3 and stats["redacted_dropped"] == 0
    rows = json.loads(
        read_comet_archive(handler.archive_path).assets()["langchain-action_records.json"][0]
    )
    withheld = [r for r in rows if "redact_error" in r]
    assert [r["action"] for r in withheld] == ["on_text", "on_text", "on_custom_event"]
    assert withheld[0]["redact_error"] == "redact hook failed: ValueError"
    assert any(VISIBLE in json.dumps(r) for r in rows)  # the other records are logged as usual
    assert_no_secret(every_byte(offline_dir))
    errors = [r for r in caplog.records if r.name == "tracker.redact" and r.levelname == "ERROR"]
    assert len(errors) == 1 and PASSWORD not in errors[0].getMessage()


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("api_key", True),
        ("openai_api_key", True),
        ("apikey", True),
        ("apiKey", True),
        ("x-api-key", True),
        ("password", True),
        ("secret", True),
        ("client_secret", True),
        ("access_token", True),
        ("Authorization", True),
        ("aws_secret_access_key", True),
        ("token_usage", False),
        ("prompt_tokens", False),
        ("total_tokens", False),
        ("max_tokens", False),
        ("completion_tokens", False),
        ("token", False),
        ("tokens", False),
        ("model_name", False),
    ],
)
def test_secret_keys(key: str, secret: bool):
    assert is_secret_key(key) is secret


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("Authorization: Bearer abcdef123456", "abcdef123456"),
        ("KeyedLLM(api_key='plain-value-1', n=1)", "plain-value-1"),
        ("{'openai_api_key': 'v-2', 'x': 1}", "v-2"),
        ('{"password": "v-3"}', "v-3"),
        ("use sk-abcdefghijklmnop0123456789 here", "sk-abcdefghijklmnop0123456789"),
        ("ghp_" + "a" * 36, "a" * 36),
    ],
)
def test_secret_values_in_text(text: str, leak: str):
    scrubbed = scrub_text(text)
    assert leak not in scrubbed and "[REDACTED]" in scrubbed


def test_ordinary_text_is_left_alone():
    text = "total_tokens: 12, max_tokens=100, the token count is fine"
    assert scrub_text(text) == text


@pytest.mark.parametrize("backend", ["clearml", "comet"])
def test_the_flushed_langchain_asset_keeps_no_secret(backend: str, offline_dir: Path):
    handler = make(backend, offline_dir)
    chain = keyed_chain()
    chain.invoke({"topic": VISIBLE}, config={"callbacks": [handler]})
    if backend == "clearml":
        result = handler.flush_tracker(name="s", langchain_asset=chain, finish=True, timeout=120)
    else:
        result = handler.flush_tracker(langchain_asset=chain, finish=True, timeout=120)
    assert result.ok, result
    files = every_byte(offline_dir)
    assert_no_secret(files)
    text = all_text(backend, handler.archive_path)
    assert "RunnableSequence" in text  # the asset was saved: the check is not vacuous
