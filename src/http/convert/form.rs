//! `multipart/form-data` uploads: the video in the part named `file`, the
//! options as text fields before or after it.

use axum::extract::Multipart;

use super::super::body::idle_limited;
use super::super::upload::clean_filename;
use super::super::{ApiError, AppState};
use super::idle;
use super::store::{store_input, Sink, StoredInput};
use crate::domain::{ClientId, JobId, JobOptions};

/// The multipart form: one part named `file` (the video), and text fields
/// for the options, before or after it.
pub(super) async fn from_multipart(
    state: &AppState,
    client: &ClientId,
    id: JobId,
    mut multipart: Multipart,
    options: &mut JobOptions,
    sink: &Sink,
) -> Result<StoredInput, ApiError> {
    let mut stored: Option<StoredInput> = None;
    let result = async {
        let mut fields = 0;
        while let Some(field) = multipart.next_field().await.map_err(|e| malformed_multipart(e.body_text()))? {
            fields += 1;
            if fields > MAX_FORM_FIELDS {
                return Err(malformed_multipart(format!("a form may have at most {MAX_FORM_FIELDS} parts")));
            }
            let name = field.name().unwrap_or("").to_string();
            if name == "file" {
                if stored.is_some() {
                    return Err(malformed_multipart("only one part named \"file\" is accepted".into()));
                }
                let filename = field.file_name().map(clean_filename);
                let body = idle_limited(field, idle(state));
                let input = store_input(state, client, id, body, filename, sink)
                    .await
                    .map_err(|e| e.into_api(|e| malformed_multipart(e.to_string())))?;
                stored = Some(input);
            } else {
                let value = small_text(field).await?;
                options.set(&name, &value)?;
            }
        }
        options.check()?;
        Ok(())
    }
    .await;
    match (result, stored) {
        (Ok(()), Some(input)) => Ok(input),
        (Ok(()), None) => Err(malformed_multipart("the form has no part named \"file\"".into())),
        (Err(e), stored) => {
            if let Some(pending) = stored.and_then(|s| s.pending) {
                pending.abort(&state.storage).await;
            }
            Err(e)
        }
    }
}

/// The file and the three options, with room for a few unknown fields
/// (which are refused one by one as invalid options anyway).
const MAX_FORM_FIELDS: usize = 8;

/// A text field of at most 1 KiB.
async fn small_text(mut field: axum::extract::multipart::Field<'_>) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| malformed_multipart(e.body_text()))? {
        buf.extend_from_slice(&chunk);
        if buf.len() > 1024 {
            return Err(malformed_multipart("form fields other than \"file\" are limited to 1 KiB".into()));
        }
    }
    String::from_utf8(buf).map_err(|_| malformed_multipart("a form field is not UTF-8 text".into()))
}

pub(super) fn malformed_multipart(detail: String) -> ApiError {
    ApiError::BadRequest { code: "malformed-multipart", detail: format!("malformed multipart body: {detail}") }
}
