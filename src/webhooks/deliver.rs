//! One delivery attempt: the address checked, then connected to (not the
//! name again), the event signed as Standard Webhooks, POSTed with time
//! limits.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The URL may not be delivered to at all; retrying will not help.
    #[error("refused: {0}")]
    Refused(String),
    /// The receiver did not take it (status, timeout, connection); retried.
    #[error("{0}")]
    Failed(String),
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Loopback, private, link-local, shared (CGNAT), unique-local, multicast
/// or unspecified: nowhere a public webhook receiver lives.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The address to connect to: the name resolved once and checked; the
/// connection then goes to that address (no second lookup a rebinding
/// name could answer differently).
pub async fn resolve(url: &reqwest::Url, allow_private: bool) -> Result<SocketAddr, DeliveryError> {
    let host = url.host_str().ok_or_else(|| DeliveryError::Refused("the URL has no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| DeliveryError::Failed(format!("cannot resolve {host}: {e}")))?
        .collect();
    let allowed = addrs.iter().copied().find(|a| allow_private || !is_internal(a.ip()));
    allowed.ok_or_else(|| {
        DeliveryError::Refused(format!(
            "{host} resolves to {addrs:?}: loopback, private or link-local (webhooks.allow_private_networks is off)"
        ))
    })
}

/// POSTs `body` (the CloudEvent) to `url` with the Standard Webhooks headers.
pub async fn deliver(
    url: &reqwest::Url,
    key: &[u8],
    id: &str,
    body: &[u8],
    allow_private: bool,
) -> Result<u16, DeliveryError> {
    let addr = resolve(url, allow_private).await?;
    let host = url.host_str().unwrap_or_default().to_string();
    let client = reqwest::Client::builder()
        .resolve(&host, addr)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(RESPONSE_TIMEOUT)
        .build()
        .map_err(|e| DeliveryError::Failed(format!("HTTP client: {e}")))?;
    let timestamp = chrono::Utc::now().timestamp();
    let response = client
        .post(url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature(key, id, timestamp, body))
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| DeliveryError::Failed(format!("POST {}: {e}", crate::config::redact_url(url.as_str()))))?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(DeliveryError::Failed(format!("the receiver answered {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let key = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0"] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1"] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
