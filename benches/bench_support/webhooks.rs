//! (k) webhook latency and event-log replay: from a job's
//! `completed-utc-time` to its webhook's arrival at a loopback receiver
//! (first attempt), beside the AMQP push of the same event; and how fast a
//! client's log of 10,000 events reads back.

use std::fmt::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};

use super::measure::*;
use super::report::{quantile, Report};
use super::scenarios::{post_file, Events};

const JOBS: usize = 30;
const LOG_EVENTS: usize = 10_000;

/// A receiver that answers 204 and reports each event id with its arrival.
async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<(String, chrono::DateTime<chrono::Utc>)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let tx = tx.clone();
            async move {
                let arrived = chrono::Utc::now();
                let id = headers["webhook-id"].to_str().unwrap_or_default().to_string();
                let _ = tx.send((id, arrived));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

pub async fn webhook_latency(env: &BenchEnv, report: &mut Report) {
    let (url, mut arrivals) = receiver().await;
    let config = env.dir.path().join("k-webhooks.toml");
    std::fs::write(
        &config,
        format!(
            "[webhooks]\nallow_private_networks = true\n[clients.default]\nwebhook_url = \"{url}\"\n\
             webhook_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
        ),
    )
    .unwrap();
    let svc = Service::start_with(env, "serve", "k", &[("TRANSCODER_CONFIG", config.display().to_string())]).await;
    let mut events = Events::bind(&svc.prefix, "job.completed.*").await;
    let small = std::fs::read(clip(env.dir.path(), 1, 160, 120)).unwrap();
    let (mut hook, mut push) = (Vec::new(), Vec::new());
    for _ in 0..JOBS {
        let (id, _) = post_file(env, &svc, small.clone()).await;
        let (pushed, body) = events.completed(&id).await;
        let completed: chrono::DateTime<chrono::Utc> =
            body["data"]["completed-utc-time"].as_str().unwrap().parse().unwrap();
        let arrived = loop {
            let (event, at) = tokio::time::timeout(Duration::from_secs(60), arrivals.recv()).await.unwrap().unwrap();
            if event == format!("{id}.completed") {
                break at;
            }
        };
        hook.push((arrived - completed).num_microseconds().unwrap() as f64 / 1000.0);
        push.push((pushed - completed).num_microseconds().unwrap() as f64 / 1000.0);
    }
    let (rate, publish_rate) = replay_rate(&svc.prefix).await;
    svc.stop();
    eprintln!(
        "(k) webhook p50 {:.1} p99 {:.1} ms; replay {rate:.0} events/s",
        quantile(&hook, 0.5),
        quantile(&hook, 0.99)
    );

    let mut md = String::new();
    let _ = writeln!(md, "## (k) Webhook latency and event-log replay\n");
    let _ = writeln!(
        md,
        "From the worker's `completed-utc-time` to the webhook's arrival at a receiver on loopback (first attempt, \
         signed, through `<prefix>.webhooks.<client>`), over {JOBS} jobs of one `serve` process; beside it, the AMQP \
         push of the same event to a subscriber (the baseline of (d)). Target: webhook p99 ≤ 20 ms.\n"
    );
    let _ = writeln!(md, "| delivery | p50 ms | p99 ms | max ms |");
    let _ = writeln!(md, "|---|---|---|---|");
    for (name, v) in [("webhook (HTTP POST)", &hook), ("AMQP push", &push)] {
        let max = v.iter().cloned().fold(f64::MIN, f64::max);
        let _ = writeln!(md, "| {name} | {:.1} | {:.1} | {max:.1} |", quantile(v, 0.5), quantile(v, 0.99));
    }
    let _ = writeln!(
        md,
        "\nReplay: {LOG_EVENTS} events of 1 KiB published to a client's exchange (kept by its log stream), then read \
         back from the first offset by one consumer (prefetch 1000, acknowledgements every 500): **{rate:.0} \
         events/s** read, against {publish_rate:.0} events/s published with confirms in the same run.\n"
    );
    report.sections.push(('k', md));
}

/// Events per second read back from a log of `LOG_EVENTS`, and the rate
/// they were published at.
async fn replay_rate(prefix: &str) -> (f64, f64) {
    let conn = lapin::Connection::connect(AMQP_URL, Default::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let (exchange, log) = (format!("{prefix}.notify.replay"), format!("{prefix}.notify.replay.log"));
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare(exchange.as_str().into(), lapin::ExchangeKind::Topic, durable, FieldTable::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("stream".into()));
    args.insert("x-max-age".into(), AMQPValue::LongString("3600s".into()));
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(log.as_str().into(), options, args).await.unwrap();
    ch.queue_bind(log.as_str().into(), exchange.as_str().into(), "#".into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let body = serde_json::json!({"specversion": "1.0", "type": "video.transcode.completed", "pad": "x".repeat(900)});
    let body = serde_json::to_vec(&body).unwrap();
    let t0 = Instant::now();
    let mut confirms = Vec::with_capacity(LOG_EVENTS);
    for n in 0..LOG_EVENTS {
        let key = format!("job.completed.{n}");
        let c = ch
            .basic_publish(exchange.as_str().into(), key.as_str().into(), Default::default(), &body, Default::default())
            .await
            .unwrap();
        confirms.push(c);
    }
    for c in confirms {
        assert!(matches!(c.await.unwrap(), lapin::Confirmation::Ack(None)));
    }
    let publish_rate = LOG_EVENTS as f64 / t0.elapsed().as_secs_f64();

    let reader = conn.create_channel().await.unwrap();
    reader.basic_qos(1000, BasicQosOptions::default()).await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), AMQPValue::LongString("first".into()));
    let t1 = Instant::now();
    let mut consumer = reader.basic_consume(log.as_str().into(), "".into(), Default::default(), args).await.unwrap();
    let mut read = 0;
    while read < LOG_EVENTS {
        let d = tokio::time::timeout(Duration::from_secs(60), consumer.next()).await.unwrap().unwrap().unwrap();
        read += 1;
        if read % 500 == 0 || read == LOG_EVENTS {
            d.ack(BasicAckOptions { multiple: true }).await.unwrap();
        }
    }
    let rate = LOG_EVENTS as f64 / t1.elapsed().as_secs_f64();
    let cleanup = conn.create_channel().await.unwrap();
    let _ = cleanup.queue_delete(log.as_str().into(), Default::default()).await;
    let _ = cleanup.exchange_delete(exchange.as_str().into(), Default::default()).await;
    let _ = conn.close(200, "".into()).await;
    (rate, publish_rate)
}
