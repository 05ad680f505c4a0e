"""Wait for `imgbake prefetch --background --ready-file PATH` (see docs/prefetch.md).

Copy into your app and call `wait_for_weights()` before loading the weights.
"""
import json, os, time

READY_FILE = os.environ.get("IMGBAKE_READY_FILE", "/tmp/imgbake-ready.json")


class WeightsFailed(RuntimeError):
    """The prefetch hook gave up; the message says which file and why."""


def wait_for_weights(ready_file=READY_FILE, timeout=None, poll=0.2):
    """Block until every weights file is verified; returns the hook's summary (a dict)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if os.path.exists(ready_file + ".failed"):
            with open(ready_file + ".failed") as f:
                raise WeightsFailed(json.load(f).get("error", "prefetch failed"))
        if os.path.exists(ready_file):  # written atomically, so never half-written
            with open(ready_file) as f:
                return json.load(f)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"weights not ready after {timeout}s ({ready_file})")
        time.sleep(poll)
