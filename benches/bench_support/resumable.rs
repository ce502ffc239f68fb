//! (j) resumable uploads: 1 GiB through tus in 8 MiB chunks against the
//! same bytes through `POST /video/convert` (interleaved pairs, one API
//! process), and the API's peak RSS for 4 GiB in 1 MiB and in 64 MiB
//! chunks (a fresh process for each, so its peak is that upload's).

use std::fmt::Write;
use std::time::Instant;

use bytes::Bytes;

use super::measure::*;
use super::report::{spread, Pair, Report};
use super::scenarios::{body_stream, post_stream};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Uploads `size` bytes (a clip header, then zeros) through tus in chunks
/// of `chunk` bytes; returns the job id from the last PATCH's Link.
async fn tus_upload(env: &BenchEnv, svc: &Service, header: &Bytes, size: u64, chunk: u64) -> String {
    let created = env
        .http
        .post(format!("{}/video/uploads", svc.address))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", size.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let url = format!("{}{}", svc.address, created.headers()["location"].to_str().unwrap());
    let mut offset = 0;
    loop {
        let len = chunk.min(size - offset);
        // The chunk's bytes: the header at offset 0, zeros elsewhere, sent
        // in 1 MiB pieces so this process does not hold the chunk.
        let body = body_stream(if offset == 0 { header.clone() } else { Bytes::new() }, len);
        let response = env
            .http
            .patch(&url)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .header("Content-Length", len.to_string())
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{}", response.text().await.unwrap_or_default());
        offset += len;
        if offset == size {
            let link = response.headers()["link"].to_str().unwrap().to_string();
            return link.trim_start_matches("</video/status/").split('>').next().unwrap().to_string();
        }
    }
}

pub async fn resumable_uploads(env: &BenchEnv, report: &mut Report, pairs: usize) {
    // A header alone: 0-filled bodies sniff as MP4; no worker runs.
    let header = Bytes::from(std::fs::read(clip(env.dir.path(), 1, 160, 120)).unwrap()[..64].to_vec());
    let svc = Service::start(env, "api", "j").await;
    let storage = env.storage(&svc.bucket).await;
    let mut results = Vec::new();
    for i in 0..pairs {
        let (mut tus, mut post) = ((0.0, 0.0), (0.0, 0.0));
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let (cpu0, t0) = (svc.cpu_seconds(), Instant::now());
            let id = if side == 0 {
                tus_upload(env, &svc, &header, GIB, 8 * MIB).await
            } else {
                post_stream(env, &svc, &header, GIB).await
            };
            let m = (t0.elapsed().as_secs_f64(), svc.cpu_seconds() - cpu0);
            if side == 0 {
                tus = m;
            } else {
                post = m;
            }
            storage.delete(&format!("inputs/default/{id}")).await.unwrap();
        }
        eprintln!("(j) 1 GiB, pair {}: tus {:.0} MiB/s, POST {:.0} MiB/s", i + 1, 1024.0 / tus.0, 1024.0 / post.0);
        results.push(Pair { a: tus.0, b: post.0, a_cpu: tus.1, b_cpu: post.1 });
    }
    svc.stop();

    let mut rss = Vec::new();
    for chunk in [MIB, 64 * MIB] {
        let svc = Service::start(env, "api", "j").await;
        let idle = svc.peak_rss_mib();
        let t0 = Instant::now();
        let id = tus_upload(env, &svc, &header, 4 * GIB, chunk).await;
        let seconds = t0.elapsed().as_secs_f64();
        let peak = svc.peak_rss_mib();
        eprintln!("(j) 4 GiB in {} MiB chunks: {seconds:.1} s, API peak RSS {peak:.1} MiB", chunk / MIB);
        let storage = env.storage(&svc.bucket).await;
        let stored = storage.sdk().head_object().bucket(&svc.bucket).key(format!("inputs/default/{id}")).send().await;
        assert_eq!(stored.unwrap().content_length(), Some((4 * GIB) as i64), "the input is whole");
        storage.delete(&format!("inputs/default/{id}")).await.unwrap();
        rss.push((chunk, seconds, idle, peak));
        svc.stop();
    }
    report.sections.push(('j', section(&results, &rss, pairs)));
}

fn section(results: &[Pair], rss: &[(u64, f64, f64, f64)], pairs: usize) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## (j) Resumable uploads\n");
    let _ = writeln!(
        md,
        "1 GiB (a clip header, then zeros) through tus in 8 MiB `PATCH`es against the same bytes through \
         `POST /video/convert`, to one `transcoder api` process over the embedded store (run in the benchmark \
         process), {pairs} interleaved pairs. Ratio = tus throughput / POST throughput (target ≥ 0.9). CPU: the \
         API process.\n"
    );
    let _ = writeln!(md, "| tus s | POST s | tus MiB/s | POST MiB/s | ratio | tus CPU s | POST CPU s |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    let col = |f: &dyn Fn(&Pair) -> f64, d| spread(&results.iter().map(f).collect::<Vec<_>>(), d);
    let ratios: Vec<f64> = results.iter().map(|p| p.b / p.a).collect();
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} |\n",
        col(&|p| p.a, 2),
        col(&|p| p.b, 2),
        col(&|p| 1024.0 / p.a, 0),
        col(&|p| 1024.0 / p.b, 0),
        spread(&ratios, 3),
        col(&|p| p.a_cpu, 2),
        col(&|p| p.b_cpu, 2)
    );
    let _ = writeln!(
        md,
        "4 GiB through tus, each chunk size in a fresh API process (target: peak RSS ≤ 64 MiB, flat in file \
         and chunk size). Idle = the process's peak before the upload.\n"
    );
    let _ = writeln!(md, "| chunk | time s | MiB/s | API idle RSS MiB | API peak RSS MiB |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (chunk, seconds, idle, peak) in rss {
        let _ =
            writeln!(md, "| {} MiB | {seconds:.1} | {:.0} | {idle:.1} | {peak:.1} |", chunk / MIB, 4096.0 / seconds);
    }
    md.push('\n');
    md
}
