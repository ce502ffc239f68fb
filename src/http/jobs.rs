//! `GET /video/jobs`: the client's own jobs, oldest first, a page at a
//! time. Job ids are UUIDv7, so the store's key order under
//! `jobs/<client>/` is submission order: a page is one listing after the
//! previous page's last key (`start-after`), never a scan from the start.

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::problems::{BadRequest, InternalError, Unauthorized, Unavailable, UnprocessableEntity};
use super::{ApiError, AppState, Client};
use crate::domain::{ClientId, JobId, JobStatus, StatusDoc};
use crate::storage::status_key;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Records read at most for one page when a filter matches few of them:
/// the page then ends early, with a token to go on from.
const SCAN_LIMIT: usize = 5000;
/// Status documents read at once.
const READ_AHEAD: usize = 16;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// The query of `GET /video/jobs`, in the document; [`Filter::parse`]
/// reads it (and refuses unknown parameters).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListQuery {
    /// Only jobs in these statuses (comma-separated).
    #[param(pattern = "^(queued|processing|done|failed|cancelled)(,(queued|processing|done|failed|cancelled))*$")]
    status: Option<String>,
    /// Only jobs submitted at or after this time.
    since: Option<DateTime<Utc>>,
    /// Jobs per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u16>,
    /// The previous page's `next-page-token`.
    page_token: Option<JobId>,
}

/// A page of the client's jobs.
#[derive(Serialize, ToSchema)]
struct JobList {
    jobs: Vec<StatusDoc>,
    /// The `page_token` of the next page; `null` at the end.
    #[serde(rename = "next-page-token")]
    #[schema(value_type = Option<JobId>, required = true)]
    next_page_token: Option<String>,
}

/// The query, checked.
#[derive(Debug, PartialEq)]
pub struct Filter {
    pub statuses: Vec<JobStatus>,
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
    pub after: Option<JobId>,
}

impl Filter {
    pub fn parse(pairs: &[(String, String)]) -> Result<Filter, ApiError> {
        let invalid = |m: String| ApiError::InvalidOption(m);
        let mut filter = Filter { statuses: Vec::new(), since: None, limit: DEFAULT_LIMIT, after: None };
        for (name, value) in pairs {
            match name.as_str() {
                "status" => {
                    for s in value.split(',') {
                        let status = serde_json::from_value(json!(s)).map_err(|_| {
                            invalid(format!(
                                "status must be queued, processing, done, failed or cancelled (comma-separated), not {s:?}"
                            ))
                        })?;
                        filter.statuses.push(status);
                    }
                }
                "since" => {
                    let t = DateTime::parse_from_rfc3339(value)
                        .map_err(|_| invalid(format!("since must be an RFC 3339 time, not {value:?}")))?;
                    filter.since = Some(t.with_timezone(&Utc));
                }
                "limit" => {
                    filter.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| invalid(format!("limit must be 1 to {MAX_LIMIT}, not {value:?}")))?;
                }
                "page_token" => {
                    filter.after =
                        Some(value.parse().map_err(|_| invalid("page_token is not one this service gave".into()))?);
                }
                other => return Err(invalid(format!("unknown parameter {other:?}"))),
            }
        }
        Ok(filter)
    }

    fn matches(&self, doc: &StatusDoc) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&doc.status))
            && self.since.is_none_or(|t| doc.submitted_utc_time >= t)
    }

    /// The key to list after: the page token's, or (for `since`) the
    /// smallest UUIDv7 of a second earlier, whichever is later.
    fn start_after(&self, client: &ClientId) -> Option<String> {
        let from_token = self.after.map(|id| status_key(client, id));
        let from_since = self.since.map(|t| {
            let ms = (t.timestamp_millis() - 1000).max(0) as u64;
            let mut bytes = [0u8; 16];
            bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
            bytes[6] = 0x70;
            bytes[8] = 0x80;
            let id: JobId = uuid::Uuid::from_bytes(bytes).to_string().parse().expect("a canonical uuid");
            status_key(client, id)
        });
        from_token.into_iter().chain(from_since).max()
    }
}

#[utoipa::path(
    get,
    path = "/video/jobs",
    operation_id = "listJobs",
    tag = "jobs",
    summary = "The client's own jobs, oldest first",
    description = "Pages neither repeat nor skip a job: pass `next-page-token` as `page_token` for the next page. A page may hold fewer than `limit` jobs when a filter matches few of the records read for it (at most 5000 per page); only a null `next-page-token` means the end.",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of status documents.", body = JobList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 422, response = UnprocessableEntity),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable)
    )
)]
async fn list(
    State(state): State<AppState>,
    Client(client): Client,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(pairs) =
        query.map_err(|e| ApiError::BadRequest { code: "bad-request", detail: format!("query string: {e}") })?;
    let filter = Filter::parse(&pairs)?;
    let prefix = format!("jobs/{client}/");
    let mut after = filter.start_after(&client);
    let mut jobs = Vec::new();
    let mut examined = 0;
    let next = loop {
        let batch = (filter.limit - jobs.len()).clamp(READ_AHEAD, MAX_LIMIT) as i32;
        let (keys, more) = state.storage.list_after(&prefix, after.as_deref(), batch).await?;
        let reads: Vec<_> = keys.iter().cloned().map(|k| read(state.storage.clone(), k)).collect();
        let docs: Vec<Option<StatusDoc>> = futures::stream::iter(reads).buffered(READ_AHEAD).try_collect().await?;
        let mut consumed = 0;
        for (key, doc) in keys.iter().zip(docs) {
            consumed += 1;
            examined += 1;
            after = Some(key.clone());
            // A record deleted between the listing and the read is skipped.
            if let Some(mut doc) = doc.filter(|d| filter.matches(d)) {
                super::files::playback_links(&state, &client, &mut doc);
                jobs.push(doc);
            }
            if jobs.len() == filter.limit || examined >= SCAN_LIMIT {
                break;
            }
        }
        let rest = more || consumed < keys.len();
        if !rest {
            break None;
        }
        if jobs.len() == filter.limit || examined >= SCAN_LIMIT {
            break after.as_deref().and_then(|k| k.strip_prefix(&prefix)).and_then(|k| k.strip_suffix(".json"));
        }
    }
    .map(str::to_string);
    Ok(Json(JobList { jobs, next_page_token: next }))
}

async fn read(storage: crate::storage::Storage, key: String) -> Result<Option<StatusDoc>, crate::storage::StoreError> {
    storage.get_json(&key).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_query_is_checked_and_since_starts_the_listing_a_second_early() {
        let f = Filter::parse(&pairs(&[("status", "done,failed"), ("limit", "2"), ("since", "2026-12-02T10:00:00Z")]))
            .unwrap();
        assert_eq!(f.statuses, vec![JobStatus::Done, JobStatus::Failed]);
        assert_eq!(f.limit, 2);
        let client = ClientId::development();
        let start = f.start_after(&client).unwrap();
        let id: uuid::Uuid =
            start.strip_prefix("jobs/default/").unwrap().strip_suffix(".json").unwrap().parse().unwrap();
        let (secs, _) = id.get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64, f.since.unwrap().timestamp() - 1);
        for bad in
            [("limit", "0"), ("limit", "1001"), ("status", "finished"), ("since", "yesterday"), ("page_token", "x")]
        {
            assert!(Filter::parse(&pairs(&[bad])).is_err(), "{bad:?}");
        }
        assert!(Filter::parse(&pairs(&[("colour", "red")])).is_err());
        assert_eq!(Filter::parse(&[]).unwrap().limit, DEFAULT_LIMIT);
    }
}
