//! The vocabulary of the service: ids, options, the job's status document,
//! its record and the plan of a split job.

pub mod audio;
mod ids;
mod job;
mod options;
pub mod picture;
pub mod plan;

pub use ids::{ClientId, JobId};
pub use job::{Color, ControlMessage, ErrorInfo, InputInfo, JobStatus, Links, OutputInfo, Segments, StatusDoc};
pub use options::{Container, JobOptions, OptionError, OutputFormat};
pub use plan::{JobRecord, PieceSpec, PlanState, TaskTiming};
