//! The scenarios (a)–(d); (e) is fitted from (a) and (b) in the report.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use transcoder::domain::JobOptions;
use transcoder::queue::private_subscription;

use super::measure::*;
use super::report::{Breakdown, Pair, Report};

/// A subscriber on `<prefix>.notify.default`.
pub struct Events {
    consumer: lapin::Consumer,
    _conn: lapin::Connection,
}

impl Events {
    pub async fn bind(prefix: &str, key: &str) -> Events {
        let conn = lapin::Connection::connect(AMQP_URL, Default::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let exchange = format!("{prefix}.notify.default");
        let consumer = private_subscription(&ch, "", &[(exchange, key.to_string())]).await.unwrap();
        Events { consumer, _conn: conn }
    }

    /// Waits for the completion of `id`; returns (arrival, event body).
    pub async fn completed(&mut self, id: &str) -> (chrono::DateTime<chrono::Utc>, serde_json::Value) {
        loop {
            let d =
                tokio::time::timeout(Duration::from_secs(600), self.consumer.next()).await.unwrap().unwrap().unwrap();
            let at = chrono::Utc::now();
            if d.routing_key.as_str() == format!("job.completed.{id}") {
                return (at, serde_json::from_slice(&d.data).unwrap());
            }
            assert!(!d.routing_key.as_str().starts_with("job.failed"), "a benchmark job failed");
        }
    }
}

pub async fn post_file(env: &BenchEnv, svc: &Service, body: Vec<u8>) -> (String, Instant) {
    let r = env
        .http
        .post(format!("{}/video/convert", svc.address))
        .header("Content-Type", "video/mp4")
        .body(body)
        .send()
        .await
        .unwrap();
    let accepted = Instant::now();
    assert_eq!(r.status(), 202);
    (r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string(), accepted)
}

/// (a) 202 → completion event vs bare ffmpeg with the same arguments.
pub async fn transcode_overhead(env: &BenchEnv, report: &mut Report, sizes: &[u32], pairs: usize) {
    let svc = Service::start(env, "serve", "a").await;
    let mut events = Events::bind(&svc.prefix, "job.completed.*").await;
    for &seconds in sizes {
        let input = clip(env.dir.path(), seconds, 1280, 720);
        let bytes = std::fs::read(&input).unwrap();
        let mut results = Vec::new();
        let mut breakdown = Vec::new();
        let mut bare_broker = Vec::new();
        for i in 0..pairs {
            let mut service = (0.0, 0.0);
            let mut bare = (0.0, 0.0);
            for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                if side == 0 {
                    let phases0 = svc.phase_seconds(&env.http).await;
                    let (id, accepted) = post_file(env, &svc, bytes.clone()).await;
                    let (cpu0, own0) = (svc.cpu_seconds(), svc.own_cpu_seconds());
                    let (broker0, bench0) = (broker_cpu(), self_cpu());
                    events.completed(&id).await;
                    service = (accepted.elapsed().as_secs_f64(), svc.cpu_seconds() - cpu0);
                    let own = svc.own_cpu_seconds() - own0;
                    let (broker, store_cpu) = (broker_cpu() - broker0, self_cpu() - bench0);
                    let phases1 = svc.phase_seconds(&env.http).await;
                    let [fetch, probe, ffmpeg, store]: [f64; 4] = std::array::from_fn(|i| phases1[i] - phases0[i]);
                    breakdown.push(Breakdown {
                        wall: service.0,
                        fetch,
                        probe,
                        ffmpeg,
                        store,
                        own_cpu: own,
                        ffmpeg_cpu: service.1 - own,
                        broker_cpu: broker,
                        store_cpu,
                    });
                } else {
                    let out = env.dir.path().join("bare.mp4");
                    let args = transcoder::transcode::ffmpeg_args(&input, "mov", &JobOptions::default(), &out);
                    let (cpu0, t0, broker0) = (children_cpu(), Instant::now(), broker_cpu());
                    let status = tokio::process::Command::new("ffmpeg")
                        .args(&args)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .await
                        .unwrap();
                    assert!(status.success());
                    bare = (t0.elapsed().as_secs_f64(), children_cpu() - cpu0);
                    bare_broker.push(broker_cpu() - broker0);
                }
            }
            eprintln!("(a) {seconds} s clip, pair {}: service {:.2} s, bare ffmpeg {:.2} s", i + 1, service.0, bare.0);
            results.push(Pair { a: service.0, b: bare.0, a_cpu: service.1, b_cpu: bare.1 });
        }
        report.transcode.push((seconds, bytes.len() as u64, results));
        report.transcode_breakdown.push((seconds, breakdown, bare_broker));
    }
    svc.stop();
}

/// A body of `size` bytes: a real MP4 header, then zeros, in 1 MiB chunks.
pub fn body_stream(
    header: Bytes,
    size: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin {
    let zeros = Bytes::from(vec![0u8; 1 << 20]);
    let chunks = size.div_ceil(1 << 20);
    Box::pin(futures::stream::iter(0..chunks).map(move |i| {
        let len = ((size - i * (1 << 20)).min(1 << 20)) as usize;
        if i == 0 {
            let mut first = header.to_vec();
            first.extend_from_slice(&zeros[header.len()..len.max(header.len())]);
            first.truncate(len);
            Ok(Bytes::from(first))
        } else {
            Ok(zeros.slice(..len))
        }
    }))
}

/// POSTs `size` bytes (`header`, then zeros) of unknown length; the job id.
pub async fn post_stream(env: &BenchEnv, svc: &Service, header: &Bytes, size: u64) -> String {
    let response = env
        .http
        .post(format!("{}/video/convert", svc.address))
        .header("Content-Type", "video/mp4")
        .body(reqwest::Body::wrap_stream(body_stream(header.clone(), size)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

/// (b) upload through the API vs a direct multipart upload to the store.
pub async fn upload_ingest(env: &BenchEnv, report: &mut Report, sizes: &[u64], pairs: usize) {
    let svc = Service::start(env, "api", "b").await;
    let storage = env.storage(&svc.bucket).await;
    let header = Bytes::from(std::fs::read(clip(env.dir.path(), 1, 160, 120)).unwrap()[..64].to_vec());
    for &size in sizes {
        let mut results = Vec::new();
        for i in 0..pairs {
            let (mut api, mut direct) = ((0.0, 0.0), (0.0, 0.0));
            for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                if side == 0 {
                    let (cpu0, t0) = (svc.cpu_seconds(), Instant::now());
                    let id = post_stream(env, &svc, &header, size).await;
                    api = (t0.elapsed().as_secs_f64(), svc.cpu_seconds() - cpu0);
                    storage.delete(&format!("inputs/default/{id}")).await.unwrap();
                } else {
                    let (cpu0, t0) = (self_cpu(), Instant::now());
                    let n = storage
                        .put_stream(
                            "baseline/upload",
                            "video/mp4",
                            Bytes::new(),
                            body_stream(header.clone(), size),
                            u64::MAX,
                        )
                        .await
                        .unwrap();
                    direct = (t0.elapsed().as_secs_f64(), self_cpu() - cpu0);
                    assert_eq!(n, size);
                    storage.delete("baseline/upload").await.unwrap();
                }
            }
            let mib = size as f64 / (1 << 20) as f64;
            eprintln!(
                "(b) {mib:.0} MiB, pair {}: API {:.0} MiB/s, direct {:.0} MiB/s",
                i + 1,
                mib / api.0,
                mib / direct.0
            );
            // Throughput ratios: the "a" side is the API.
            results.push(Pair { a: api.0, b: direct.0, a_cpu: api.1, b_cpu: direct.1 });
        }
        report.upload.push((size, results, svc.peak_rss_mib()));
    }
    svc.stop();
}

/// (c) 202s per second vs the same PUT plus a confirmed publish done directly.
pub async fn submission_rate(env: &BenchEnv, report: &mut Report, pairs: usize) {
    let svc = Service::start(env, "api", "c").await;
    let storage = env.storage(&svc.bucket).await;
    let small = Bytes::from(std::fs::read(clip(env.dir.path(), 1, 160, 120)).unwrap());
    let mut amqp = transcoder::config::Settings::defaults().amqp;
    amqp.prefix = format!("{}-direct", svc.prefix);
    let broker = transcoder::queue::Broker::new(&amqp, 3, vec![]);
    broker.connect().await.unwrap();
    let names = broker.names().clone();
    for concurrency in [1usize, 16, 64] {
        let requests = 64 * 4;
        let mut runs = Vec::new();
        for i in 0..pairs {
            let (mut api, mut direct) = (Vec::new(), Vec::new());
            let (mut api_wall, mut direct_wall, mut floor_wall) = (0.0, 0.0, 0.0);
            let order = if i % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
            for side in order {
                let t0 = Instant::now();
                let lat: Vec<f64> = futures::stream::iter(0..requests)
                    .map(|n| {
                        let (small, storage, broker, names) = (small.clone(), &storage, &broker, &names);
                        let url = format!("{}/video/convert", svc.address);
                        async move {
                            let t = Instant::now();
                            if side == 0 {
                                let r = env
                                    .http
                                    .post(url)
                                    .header("Content-Type", "video/mp4")
                                    .body(small)
                                    .send()
                                    .await
                                    .unwrap();
                                assert_eq!(r.status(), 202);
                            } else {
                                let key = format!("baseline/{i}-{n}");
                                let body = futures::stream::empty::<Result<Bytes, std::io::Error>>();
                                storage.put_stream(&key, "video/mp4", small, body, u64::MAX).await.unwrap();
                                if side == 2 {
                                    // What a 202 requires besides: the status document.
                                    let doc = serde_json::json!({"id": key, "status": "queued"});
                                    storage.put_json(&format!("{key}.json"), &doc).await.unwrap();
                                }
                                let props = lapin::BasicProperties::default().with_delivery_mode(2);
                                broker
                                    .publish(&names.jobs_exchange(), &names.jobs_routing_key(), true, b"{}", props)
                                    .await
                                    .unwrap();
                            }
                            t.elapsed().as_secs_f64()
                        }
                    })
                    .buffer_unordered(concurrency)
                    .collect()
                    .await;
                let wall = t0.elapsed().as_secs_f64();
                match side {
                    0 => (api, api_wall) = (lat, wall),
                    1 => (direct, direct_wall) = (lat, wall),
                    _ => floor_wall = wall,
                }
            }
            eprintln!(
                "(c) concurrency {concurrency}, pair {}: API {:.0}/s, direct {:.0}/s",
                i + 1,
                requests as f64 / api_wall,
                requests as f64 / direct_wall
            );
            runs.push((
                requests as f64 / api_wall,
                requests as f64 / direct_wall,
                api,
                direct,
                requests as f64 / floor_wall,
            ));
        }
        report.rate.push((concurrency, runs));
    }
    broker.close().await;
    delete_topology(&amqp.prefix);
    svc.stop();
}

/// (d) pushed completion vs polling the status once a second.
pub async fn notification_latency(env: &BenchEnv, report: &mut Report) {
    let svc = Service::start(env, "serve", "d").await;
    let mut events = Events::bind(&svc.prefix, "job.completed.*").await;
    let small = std::fs::read(clip(env.dir.path(), 1, 160, 120)).unwrap();
    let (mut push, mut poll) = (Vec::new(), Vec::new());
    for n in 0..30 {
        let (id, _) = post_file(env, &svc, small.clone()).await;
        let poller = {
            let (http, url) = (env.http.clone(), format!("{}/video/status/{id}", svc.address));
            tokio::spawn(async move {
                // A poller with its own phase, as real ones have.
                tokio::time::sleep(Duration::from_millis((n * 137 % 1000) as u64)).await;
                loop {
                    let doc: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
                    if doc["status"] == "done" {
                        return chrono::Utc::now();
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        let (arrived, body) = events.completed(&id).await;
        let completed: chrono::DateTime<chrono::Utc> =
            body["data"]["completed-utc-time"].as_str().unwrap().parse().unwrap();
        let polled = poller.await.unwrap();
        push.push((arrived - completed).num_microseconds().unwrap() as f64 / 1e6);
        poll.push((polled - completed).num_microseconds().unwrap() as f64 / 1e6);
    }
    eprintln!("(d) {} jobs measured", push.len());
    report.latency = Some((push, poll));
    svc.stop();
}
