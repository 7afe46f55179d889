"""How long consumer-group changes take on the test broker (Tansu), with librdkafka's defaults and with ours.

For each setting: a four-partition topic with 1,000 messages; consumer A subscribes (time to its first message),
consumer B of the same group joins (time until both own partitions and B has a message), A closes (time until B
owns all four). `core.kafka.CONSUMER_DEFAULTS` come from these figures.

    .venv/bin/python scripts/bench_rebalance.py --json benchmarks/rebalance.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

from benchlib import markdown_table, write_results  # noqa: E402

from kafka_broker import Broker, new_topic, produce, start_broker  # noqa: E402
from visiontrain.core.kafka import CONSUMER_DEFAULTS  # noqa: E402

LIMIT_S = 60.0
SETTINGS: dict[str, dict[str, Any]] = {
    "librdkafka defaults (session 45 s, heartbeat 3 s)": {},
    "visiontrain defaults (session 6 s, heartbeat 0.5 s)": {
        key: CONSUMER_DEFAULTS[key] for key in ("session.timeout.ms", "heartbeat.interval.ms")},
}


def measure(broker: Broker, extra: dict[str, Any]) -> dict[str, float | None]:
    from confluent_kafka import Consumer

    topic = new_topic(broker, 4)
    produce(broker, topic, [(str(i), f"m{i}") for i in range(1000)], partitions=4)

    def consumer() -> Any:
        return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{topic}", "log_level": 0,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, **extra})

    first, second = consumer(), consumer()
    first.subscribe([topic])
    started, first_message = time.monotonic(), None
    while first_message is None and time.monotonic() - started < LIMIT_S:
        message = first.poll(0.05)
        if message is not None and not message.error():
            first_message = time.monotonic() - started
    second.subscribe([topic])
    started, shared = time.monotonic(), None
    while shared is None and time.monotonic() - started < LIMIT_S:
        first.poll(0.05)
        message = second.poll(0.05)
        if first.assignment() and second.assignment() and message is not None and not message.error():
            shared = time.monotonic() - started
    first.close()
    started, takeover = time.monotonic(), None
    while takeover is None and time.monotonic() - started < LIMIT_S:
        second.poll(0.05)
        if len(second.assignment()) == 4:
            takeover = time.monotonic() - started
    second.close()
    return {"first_member_first_message_s": first_message, "second_member_sharing_s": shared,
            "takeover_after_close_s": takeover}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    broker = start_broker(Path(tempfile.mkdtemp(prefix="bench_rebalance_")))
    results = {}
    try:
        for name, extra in SETTINGS.items():
            results[name] = measure(broker, extra)
            print(name, results[name], flush=True)
    finally:
        broker.stop()

    def shown(value: float | None) -> str:
        return f"> {LIMIT_S:g}" if value is None else f"{value:.1f}"

    print(markdown_table(["client settings", "A's first message s", "A and B sharing s", "B owns all after A closes s"],
                         [[name, *(shown(v) for v in row.values())] for name, row in results.items()]))
    write_results(args.json, " ".join(["scripts/bench_rebalance.py", *sys.argv[1:]]),
                  {"limit_s": LIMIT_S, "results": results})


if __name__ == "__main__":
    main()
