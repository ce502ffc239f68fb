//! The request and the answer of `POST /video/convert` as the OpenAPI
//! document shows them (the handler reads the request itself, option by
//! option, to tell a malformed value (400) from an invalid one (422)).

use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use super::super::openapi::parts;
use crate::domain::OutputFormat;

/// The options as query parameters, in the document ([`JobOptions::set`]
/// reads them, and refuses unknown ones).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct ConvertQuery {
    #[param(default = "mp4")]
    format: Option<OutputFormat>,
    /// Output height in pixels (even, 16–4320); the aspect ratio is kept.
    #[param(minimum = 16, maximum = 4320, multiple_of = 2)]
    height: Option<u32>,
    /// 0–9; higher runs first.
    #[param(minimum = 0, maximum = 9, default = 5)]
    priority: Option<u8>,
    /// `hls` and `dash` only: the renditions' heights, comma-separated rungs of
    /// 2160, 1440, 1080, 720, 480, 360, 240 (each once); default: every rung at or
    /// below the input's height. Rungs above the input's height are left out.
    #[param(pattern = r"^(2160|1440|1080|720|480|360|240)(,(2160|1440|1080|720|480|360|240))*$", example = "720,360")]
    renditions: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct IdempotencyKey {
    /// 1–255 visible ASCII characters, optionally in double quotes. The same key with the same
    /// request returns the first job again (202); with another request 422; while the first
    /// request with the key is still running 409.
    #[param(rename = "Idempotency-Key", nullable = false, pattern = r#"^"*[!#-~](?:[!-~]{0,253}[!#-~])?"*$"#)]
    idempotency_key: Option<String>,
}

/// The multipart form, in the document.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ConvertForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    #[schema(nullable = false)]
    format: Option<OutputFormat>,
    #[schema(nullable = false, minimum = 16, maximum = 4320, multiple_of = 2)]
    height: Option<u32>,
    #[schema(nullable = false, minimum = 0, maximum = 9)]
    priority: Option<u8>,
    /// As the query parameter `renditions`.
    #[schema(nullable = false, pattern = r"^(2160|1440|1080|720|480|360|240)(,(2160|1440|1080|720|480|360|240))*$")]
    renditions: Option<String>,
}

/// The 202 of `POST /video/convert`.
pub(super) struct Accepted;

impl IntoResponses for Accepted {
    fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
        let about = "Accepted: the input is stored, the status document written and the job confirmed by the broker.";
        let mut accepted = ResponseBuilder::new()
            .description(about)
            .header("Location", parts::location("/video/status/", "The status monitor, `/video/status/{id}`."))
            .header("Retry-After", parts::retry_after(true))
            .content("application/json", parts::json::<crate::domain::StatusDoc>());
        for (name, operation) in [
            ("GetStatus", "getStatus"),
            ("CancelJob", "cancelJob"),
            ("DownloadResult", "downloadResult"),
            ("StreamEvents", "streamEvents"),
        ] {
            accepted = accepted.link(name, parts::job_link(operation));
        }
        [("202".to_string(), accepted.build().into())].into()
    }
}
