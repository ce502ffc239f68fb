#!/usr/bin/env python3
"""Catch up on everything a client missed: replay its event log.

Every event published to <prefix>.notify.<client> is also kept in the
RabbitMQ stream <prefix>.notify.<client>.log (for amqp.event_retention_seconds).
This consumes the stream from an offset -- "first", "last", "next", a
number, or an RFC 3339 time -- and prints each CloudEvent as one JSON line,
in the order it was published, then keeps following new events.

    pip install pika
    AMQP_URL=amqp://transcoder.acme:...@broker:5672/%2f \
        python3 examples/replay.py --client acme --offset 2026-12-01T00:00:00Z

A subscriber that remembers the offset of the last event it handled (the
stream's `x-stream-offset` header on each delivery) resumes exactly after it
with --offset <that + 1>.

Exit status: 0 after --completed N completed events (when given), 2 when
--timeout seconds pass without one.
"""
import argparse
import datetime
import json
import os
import sys

import pika


def offset_argument(text):
    if text in ("first", "last", "next"):
        return text
    if text.isdigit():
        return int(text)
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    # pika sends a datetime as an AMQP timestamp.
    return when


def main():
    ap = argparse.ArgumentParser(description="Replay a client's transcoder event log.")
    ap.add_argument("--prefix", default="transcoder", help="amqp.prefix of the service")
    ap.add_argument("--client", default="default", help="client id")
    ap.add_argument("--offset", default="first", help="first, last, next, an offset or an RFC 3339 time")
    ap.add_argument("--completed", type=int, metavar="N", help="exit after N completed events")
    ap.add_argument("--timeout", type=float, metavar="SECONDS", help="exit 2 when --completed is not reached in time")
    args = ap.parse_args()

    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    # Streams need a prefetch and manual acknowledgements.
    ch.basic_qos(prefetch_count=100)
    log = f"{args.prefix}.notify.{args.client}.log"
    state = {"completed": 0}

    def on_event(channel, method, properties, body):
        event = json.loads(body)
        offset = (properties.headers or {}).get("x-stream-offset")
        print(json.dumps({"offset": offset, "routing-key": method.routing_key, "event": event}), flush=True)
        channel.basic_ack(method.delivery_tag)
        if method.routing_key.startswith("job.completed."):
            state["completed"] += 1
            if args.completed is not None and state["completed"] >= args.completed:
                channel.stop_consuming()

    ch.basic_consume(log, on_event, arguments={"x-stream-offset": offset_argument(args.offset)})
    print(f"replaying {log} from {args.offset}", file=sys.stderr, flush=True)
    if args.timeout:
        def give_up():
            print(f"timed out after {args.timeout} s", file=sys.stderr, flush=True)
            ch.stop_consuming()
            sys.exit(2)

        conn.call_later(args.timeout, give_up)
    ch.start_consuming()
    conn.close()


if __name__ == "__main__":
    main()
