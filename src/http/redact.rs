//! Credentials never reach a log line: the request span shows the URI with
//! the values of credential query parameters replaced, and no headers.

use axum::http::{Request, Uri};

/// Query parameters whose values are credentials.
const SECRET_PARAMS: [&str; 5] = ["api_key", "token", "signature", "sig", "key"];

const REDACTED: &str = "REDACTED";

/// `uri` as it may be logged: path as is, credential values replaced.
pub fn uri(uri: &Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else { return path.to_string() };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret(name) => format!("{name}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
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
        let u: Uri = "/video/status/abc".parse().unwrap();
        assert_eq!(uri(&u), "/video/status/abc");
    }
}
