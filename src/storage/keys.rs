//! Object keys, built from the client id and the job id, never from
//! user-supplied names.

use crate::domain::{ClientId, JobId, OutputFormat};

pub fn input_key(client: &ClientId, id: JobId) -> String {
    format!("inputs/{client}/{id}")
}

pub fn output_key(client: &ClientId, id: JobId, format: OutputFormat) -> String {
    format!("outputs/{client}/{id}/output.{}", format.extension())
}

pub fn status_key(client: &ClientId, id: JobId) -> String {
    format!("jobs/{client}/{id}.json")
}

/// The folder of a job's intermediate objects (pieces of a split job).
pub fn work_prefix(client: &ClientId, id: JobId) -> String {
    format!("work/{client}/{id}/")
}

/// The folder of a job's output: the result and its poster and storyboard
/// (and, for a package, every file of it).
pub fn output_prefix(client: &ClientId, id: JobId) -> String {
    format!("outputs/{client}/{id}/")
}

/// One file of a job's output folder, by its name within it.
pub fn output_file_key(client: &ClientId, id: JobId, name: &str) -> String {
    format!("{}{name}", output_prefix(client, id))
}
