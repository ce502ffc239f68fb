//! The vocabulary of the service: ids, options, the job's status document
//! and the messages that travel through the broker.

mod ids;
mod job;
mod options;

pub use ids::{ClientId, JobId};
pub use job::{ControlMessage, ErrorInfo, InputInfo, JobMessage, JobStatus, Links, OutputInfo, StatusDoc};
pub use options::{Container, JobOptions, OptionError, OutputFormat};
