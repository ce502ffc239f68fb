//! `Authorization: Bearer <api-key>` → the client id.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::domain::ClientId;

/// The authenticated client of a request.
#[derive(Debug, Clone)]
pub struct Client(pub ClientId);

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let keys = &state.settings.auth.keys;
        if keys.is_empty() {
            return Ok(Client(ClientId::development()));
        }
        let from_header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_string());
        // Browsers' EventSource and plain download links cannot send
        // headers: those two also take the key as `?api_key=`.
        let from_query = || {
            let path = parts.uri.path();
            if !path.starts_with("/video/events/") && !path.starts_with("/video/download/") {
                return None;
            }
            let query = parts.uri.query()?;
            serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .ok()?
                .into_iter()
                .find_map(|(k, v)| (k == "api_key").then_some(v))
        };
        let key = from_header.or_else(from_query).ok_or(ApiError::Unauthorized)?;
        let key = key.as_str();
        keys.get(key).and_then(|c| ClientId::parse(c)).map(Client).ok_or(ApiError::Unauthorized)
    }
}
