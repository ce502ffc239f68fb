//! Credentials never reach a log line: the request span shows the URI with
//! the values of credential query parameters replaced, and no headers.

use axum::http::{Request, Uri};

/// Query parameters whose values are credentials.
const SECRET_PARAMS: [&str; 5] = ["api_key", "token", "signature", "sig", "key"];

const REDACTED: &str = "REDACTED";

/// Path prefixes whose next segment is a credential (a playback token).
const SECRET_SEGMENTS: [&str; 1] = ["/video/play/"];

/// `uri` as it may be logged: credential path segments and query values replaced.
pub fn uri(uri: &Uri) -> String {
    let path = redact_path(uri.path());
    let Some(query) = uri.query() else { return path };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret(name) => format!("{name}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

fn redact_path(path: &str) -> String {
    for prefix in SECRET_SEGMENTS {
        if let Some(rest) = path.strip_prefix(prefix) {
            let tail = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
            return format!("{prefix}{REDACTED}{tail}");
        }
    }
    path.to_string()
}

fn is_secret(name: &str) -> bool {
    let decoded = name.replace("%5F", "_").replace("%5f", "_");
    SECRET_PARAMS.iter().any(|p| decoded.eq_ignore_ascii_case(p))
}

/// The span of one request (replaces tower-http's default, which records
/// the full URI).
pub fn request_span<B>(request: &Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %uri(request.uri()),
        version = ?request.version(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_values_are_replaced_and_everything_else_kept() {
        let u: Uri = "/video/events/abc?api_key=s3cret&since=10".parse().unwrap();
        assert_eq!(uri(&u), "/video/events/abc?api_key=REDACTED&since=10");
        let u: Uri = "/video/download/abc?API%5FKEY=s3cret&token=t0k".parse().unwrap();
        assert_eq!(uri(&u), "/video/download/abc?API%5FKEY=REDACTED&token=REDACTED");
        let u: Uri = "/video/play/eyJh.c2ln/poster.jpg".parse().unwrap();
        assert_eq!(uri(&u), "/video/play/REDACTED/poster.jpg");
        let u: Uri = "/video/status/abc".parse().unwrap();
        assert_eq!(uri(&u), "/video/status/abc");
    }
}
