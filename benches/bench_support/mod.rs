//! The machinery of the benchmark: the service under test as its own
//! processes, baselines, statistics and the report.

mod color;
mod ladder;
mod measure;
mod report;
mod resumable;
mod scenarios;
mod split;
mod webhooks;

pub use color::color_cost;
pub use ladder::{ladder_cost, ladder_split_scaling};
pub use measure::*;
pub use report::Report;
pub use resumable::resumable_uploads;
pub use scenarios::*;
pub use split::split_scaling;
pub use webhooks::webhook_latency;
