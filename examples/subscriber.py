#!/usr/bin/env python3
"""Print the job events transcoder pushes to one client's exchange.

Binds a private, server-named queue to the topic exchange
<prefix>.notify.<client> and prints one JSON line per CloudEvent:
{"type", "id", "subject", "status"}. With --job, every event of that job
(started, progress, completed, ...); otherwise only outcomes.

    pip install pika
    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
        python3 examples/subscriber.py --client default --count 1 --timeout 600

Exit status: 0 after --count terminal events (completed, failed or
cancelled), 2 when --timeout seconds pass without a terminal event.
"""
import argparse
import uuid
import json
import os
import sys

import pika

TERMINAL = (".completed", ".failed", ".cancelled")


def main():
    ap = argparse.ArgumentParser(description="Print transcoder job events as JSON lines.")
    ap.add_argument("--prefix", default="transcoder", help="amqp.prefix of the service")
    ap.add_argument("--client", default="default", help="client id (exchange <prefix>.notify.<client>)")
    ap.add_argument("--job", metavar="JOB_ID", help="all events of this job only")
    ap.add_argument("--count", type=int, metavar="N", help="exit after N terminal events (default: run forever)")
    ap.add_argument("--timeout", type=float, metavar="SECONDS", help="exit 2 when no terminal event arrives for this long")
    args = ap.parse_args()

    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    exchange = f"{args.prefix}.notify.{args.client}"
    # The service declares the exchange; a provisioned client user may only
    # check that it exists, and name its queues <prefix>.client.<client>.*.
    ch.exchange_declare(exchange, exchange_type="topic", passive=True)
    queue = f"{args.prefix}.client.{args.client}.{uuid.uuid4().hex[:12]}"
    ch.queue_declare(queue, exclusive=True, auto_delete=True)
    keys = [f"job.*.{args.job}"] if args.job else [f"job.{e}.*" for e in ("completed", "failed", "cancelled")]
    for key in keys:
        ch.queue_bind(queue, exchange, routing_key=key)

    state = {"terminal": 0, "timed_out": False, "timer": None}

    def arm_timer():  # (re)start the --timeout countdown
        if args.timeout is not None:
            if state["timer"] is not None:
                conn.remove_timeout(state["timer"])
            state["timer"] = conn.call_later(args.timeout, lambda: state.update(timed_out=True))

    def on_message(_ch, _method, _props, body):
        try:
            event = json.loads(body)
        except ValueError:
            print(f"skipping a message that is not JSON: {body[:80]!r}", file=sys.stderr)
            return
        data = event.get("data") or {}
        line = {"type": event.get("type"), "id": event.get("id"),
                "subject": event.get("subject"), "status": data.get("status")}
        print(json.dumps(line), flush=True)
        if str(event.get("type", "")).endswith(TERMINAL):
            state["terminal"] += 1
            arm_timer()

    ch.basic_consume(queue, on_message, auto_ack=True)
    print(f"subscribed to {exchange} as {queue}", file=sys.stderr, flush=True)
    arm_timer()
    while not state["timed_out"] and (args.count is None or state["terminal"] < args.count):
        conn.process_data_events(time_limit=1)
    conn.close()
    if state["timed_out"]:
        print(f"no terminal event within {args.timeout:g} s", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
