//! The vocabulary of the service: ids, options, the job's status document,
//! its record and the plan of a split job.

pub mod audio;
mod ids;
mod job;
mod media;
mod options;
pub mod picture;
mod pieces;
pub mod plan;
pub mod schema;

pub use ids::{ClientId, JobId};
pub use job::{ControlMessage, JobStatus, StatusDoc};
pub use media::{Color, ErrorInfo, InputInfo, Links, OutputInfo, Rendition, Segments};
pub use options::{Container, JobOptions, OptionError, OutputFormat, RUNGS};
pub use plan::{InputVideo, JobRecord, PieceSpec, PlanState, TaskTiming};
