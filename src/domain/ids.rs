use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job id: a UUIDv7, so ids sort by submission time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

impl utoipa::PartialSchema for JobId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
        super::schema::matching(format!("^{}$", super::schema::UUID))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .description(Some("A UUIDv7, canonical lower-case hyphenated form."))
            .examples(["0190c8e4-7b4a-7c2e-9a51-3f2d1c0b9e77"])
            .into()
    }
}

impl utoipa::ToSchema for JobId {}

impl JobId {
    pub fn new() -> JobId {
        JobId(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        JobId::new()
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the canonical hyphenated form names a job.
        if s.len() != 36 {
            return Err(Uuid::parse_str("-").unwrap_err());
        }
        Uuid::parse_str(s).map(JobId)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A client (tenant) id. It becomes part of storage keys and AMQP names, so
/// it is restricted to a safe alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(s: &str) -> Option<ClientId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        ok.then(|| ClientId(s.to_string()))
    }

    /// The client of development mode (no API keys configured).
    pub fn development() -> ClientId {
        ClientId("default".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_and_reject_other_forms() {
        let id = JobId::new();
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
        assert!("not-a-uuid".parse::<JobId>().is_err());
        let simple = id.to_string().replace('-', "");
        assert!(simple.parse::<JobId>().is_err());
    }

    #[test]
    fn client_ids_are_restricted_to_a_safe_alphabet() {
        assert!(ClientId::parse("acme-2").is_some());
        assert!(ClientId::parse("").is_none());
        assert!(ClientId::parse("Acme").is_none());
        assert!(ClientId::parse("a/b").is_none());
        assert!(ClientId::parse("a.b").is_none());
    }
}
