//! `transcoder watch [JOB_ID]`: the client's events as JSON lines.

use std::io::Write;

use super::{Events, Target};

pub async fn watch(target: &Target, job: Option<&str>) -> anyhow::Result<()> {
    let binding = match job {
        Some(id) => format!("job.*.{id}"),
        None => "#".to_string(),
    };
    let mut events = Events::subscribe(target, &binding).await?;
    let mut out = std::io::stdout().lock();
    loop {
        let event = events.next().await?;
        writeln!(out, "{}", event.body)?;
        out.flush()?;
        let terminal =
            ["completed", "failed", "cancelled"].iter().any(|k| event.routing_key.starts_with(&format!("job.{k}.")));
        if job.is_some() && terminal {
            return Ok(());
        }
    }
}
