//! Prometheus metrics (the `metrics` facade, exported as text at
//! `GET /metrics`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Job and queue durations span a second to an hour.
const SECONDS_BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (embedding); then ours
        // just renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("transcoder_jobs_submitted_total", "Jobs accepted (202), by output format");
    describe_counter!("transcoder_jobs_completed_total", "Jobs done, by output format");
    describe_counter!("transcoder_jobs_failed_total", "Jobs failed, by output format and error code");
    describe_counter!("transcoder_jobs_cancelled_total", "Jobs cancelled");
    describe_histogram!("transcoder_job_duration_seconds", Unit::Seconds, "From start of processing to done");
    describe_histogram!(
        "transcoder_job_phase_seconds",
        Unit::Seconds,
        "Steps of a transcode: fetch (input copy), probe, ffmpeg, store (output probe and upload)"
    );
    describe_histogram!("transcoder_queue_wait_seconds", Unit::Seconds, "From submission to first start");
    describe_gauge!("transcoder_queue_depth", "Jobs waiting in <prefix>.jobs");
    describe_gauge!("transcoder_queue_consumers", "Workers consuming <prefix>.jobs");
    describe_gauge!("transcoder_uploads_in_progress", "Uploads being received, by client");
    describe_counter!("transcoder_upload_bytes_total", Unit::Bytes, "Bytes of accepted uploads");
    describe_counter!("transcoder_http_requests_total", "HTTP requests, by method, route and status");
}
