"""A featurizer process for the crash test: ``python featurizer_proc.py URL STORE``.

Runs until SIGTERM (then stops cleanly, printing a JSON line: the offsets it resumed at
and the events it processed); the test kills it with SIGKILL mid-stream.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from modelstream.backplane.factory import open_backplane
from modelstream.clock import SystemClock
from modelstream.features.featurizer import Featurizer
from modelstream.features.state import SqliteStateStore
from modelstream.settings import Settings
from tests.features.helpers import truck_features


def main() -> None:
    url, store = sys.argv[1], sys.argv[2]
    settings = Settings(backplane=url, default_partitions=2, session_timeout_ms=500)
    backplane = open_backplane(url, settings)
    featurizer = Featurizer(
        backplane,
        settings,
        "trucks",
        truck_features(ooo=20, lateness=10),
        clock=SystemClock(),
        store=SqliteStateStore(store),
        checkpoint_every=40,
        max_records=25,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    while not done.is_set():
        featurizer.run_once(timeout=0.05)
        time.sleep(0.01)  # slow enough for the test to kill it mid-stream
    featurizer.stop()
    backplane.close()
    report = {"resumed_at": featurizer.resumed_at, "events": featurizer.stats.events}
    print(orjson.dumps(report, option=orjson.OPT_NON_STR_KEYS).decode(), flush=True)


if __name__ == "__main__":
    main()
