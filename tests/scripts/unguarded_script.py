with open(__import__("os").environ["TRACKER_TEST_SIDE_EFFECT_FILE"], "a") as _side_effect:
    _side_effect.write(f"ran as {__name__!r} in pid {__import__('os').getpid()}\n")

# A user script as people write them: no `if __name__ == "__main__":` guard. The statement
# above is a top-level side effect standing in for whatever such a script does at import (an LLM
# call, a file written): it must run exactly once, in the application's own process. Used by
# tests/test_worker_program.py, which runs it as a file, with -c, from stdin and notebook style.
# Reads TRACKER_TEST_SIDE_EFFECT_FILE and TRACKER_TEST_OFFLINE_DIR; prints one "REPORT {json}"
# line with each handler's flush result and archive.
import json
import os
import sys

from langchain_core.language_models import FakeListLLM
from langchain_core.prompts import PromptTemplate

from tracker import ClearMLCallbackHandler, CometCallbackHandler

offline_dir = os.environ["TRACKER_TEST_OFFLINE_DIR"]
clearml = ClearMLCallbackHandler(
    task_name="unguarded-script",
    visualize=True,
    complexity_metrics=True,
    offline=True,
    offline_dir=offline_dir,
)
comet = CometCallbackHandler(
    complexity_metrics=True,
    visualizations=["dep"],
    offline=True,
    offline_dir=offline_dir,
)
answers = [
    "Apple is looking at buying a startup in London for one billion dollars.",
    "The Seine flows through Paris. Many people walk along its banks every day.",
    "Mount Everest is in Nepal. Climbers need weeks to get used to the thin air.",
]
chain = PromptTemplate.from_template("Tell me about {topic}.") | FakeListLLM(responses=answers)
for topic in ("Apple", "Paris", "Nepal"):
    chain.invoke({"topic": topic}, config={"callbacks": [clearml, comet]})

report = {}
for name, handler in (("clearml", clearml), ("comet", comet)):
    result = handler.flush_tracker(finish=True, timeout=20)
    report[name] = {
        "ok": result.ok,
        "written": result.written,
        "dropped": result.dropped,
        "pending": result.pending,
        "errors": [str(error) for error in result.errors],
        "archive": str(handler.archive_path) if handler.archive_path else None,
    }
sys.stdout.write("REPORT " + json.dumps(report) + "\n")
