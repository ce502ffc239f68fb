//! Playback tokens: a signed, expiring capability to read one job's output
//! files without an API key (`/video/play/{token}/{file}`), so that players,
//! `<img>` and `<video>` tags can fetch them and relative URIs in manifests
//! resolve under the same token.
//!
//! A token is `<payload>.<signature>`, both base64url without padding: the
//! payload is `<client>/<job id>/<expiry, Unix seconds>`, the signature its
//! HMAC-SHA256 under `http.playback_secret`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{ClientId, JobId};

/// The key that signs and checks tokens.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
    ttl_seconds: i64,
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub client: ClientId,
    pub id: JobId,
}

/// Why a token was refused (all answer 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the playback token is malformed")]
    Malformed,
    #[error("the playback token's signature does not match")]
    Forged,
    #[error("the playback token expired")]
    Expired,
}

impl Signer {
    /// From `http.playback_secret` (empty: a random key for this process).
    pub fn new(secret: &str, ttl_seconds: u64) -> Signer {
        let key = if secret.is_empty() {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key).expect("the system's random source");
            key
        } else {
            secret.as_bytes().to_vec()
        };
        Signer { key, ttl_seconds: ttl_seconds.min(i64::MAX as u64) as i64 }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(payload);
        mac
    }

    /// A token for the job's output, valid for the configured lifetime from `now`.
    pub fn issue(&self, client: &ClientId, id: JobId, now: DateTime<Utc>) -> String {
        let payload = format!("{client}/{id}/{}", now.timestamp().saturating_add(self.ttl_seconds));
        let signature = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(signature))
    }

    /// The grant of a valid, unexpired token.
    pub fn check(&self, token: &str, now: DateTime<Utc>) -> Result<Grant, Refused> {
        let (payload, signature) = token.split_once('.').ok_or(Refused::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Refused::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Refused::Malformed)?;
        // Constant-time comparison.
        self.mac(&payload).verify_slice(&signature).map_err(|_| Refused::Forged)?;
        let payload = String::from_utf8(payload).map_err(|_| Refused::Malformed)?;
        let mut fields = payload.splitn(3, '/');
        let (Some(client), Some(id), Some(expiry)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(Refused::Malformed);
        };
        let expiry: i64 = expiry.parse().map_err(|_| Refused::Malformed)?;
        if now.timestamp() >= expiry {
            return Err(Refused::Expired);
        }
        let client = ClientId::parse(client).ok_or(Refused::Malformed)?;
        let id = id.parse().map_err(|_| Refused::Malformed)?;
        Ok(Grant { client, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_grants_its_job_until_it_expires_and_nothing_else_passes() {
        let signer = Signer::new("playback-key", 60);
        let client = ClientId::parse("alpha").unwrap();
        let id = JobId::new();
        let now = Utc::now();
        let token = signer.issue(&client, id, now);
        assert_eq!(signer.check(&token, now), Ok(Grant { client: client.clone(), id }));
        assert_eq!(signer.check(&token, now + chrono::Duration::seconds(60)), Err(Refused::Expired));
        // Another key, an altered payload or signature, rubbish.
        assert_eq!(Signer::new("other-key", 60).check(&token, now), Err(Refused::Forged));
        let (payload, signature) = token.split_once('.').unwrap();
        let other = URL_SAFE_NO_PAD.encode(format!("alpha/{}/{}", JobId::new(), now.timestamp() + 60));
        assert_eq!(signer.check(&format!("{other}.{signature}"), now), Err(Refused::Forged));
        let mut flipped = signature.to_string();
        flipped.replace_range(0..1, if signature.starts_with('A') { "B" } else { "A" });
        assert_eq!(signer.check(&format!("{payload}.{flipped}"), now), Err(Refused::Forged));
        assert_eq!(signer.check("nonsense", now), Err(Refused::Malformed));
        // A random key per process when none is configured.
        assert_eq!(Signer::new("", 60).check(&token, now), Err(Refused::Forged));
    }
}
