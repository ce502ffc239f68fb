//! `transcoder watch [JOB_ID]`: the client's events as JSON lines.

use std::io::Write;

use super::{Events, Target};

/// `since`: replay the client's event log from then (a duration back from
/// now such as `10m`, `2h`, `1d`, or an RFC 3339 time), then follow.
pub async fn watch(target: &Target, job: Option<&str>, since: Option<&str>) -> anyhow::Result<()> {
    let binding = match job {
        Some(id) => format!("job.*.{id}"),
        None => "#".to_string(),
    };
    let mut events = match since {
        Some(since) => Events::replay(target, parse_since(since, chrono::Utc::now())?).await?,
        None => Events::subscribe(target, &binding).await?,
    };
    let mut out = std::io::stdout().lock();
    loop {
        let event = events.next().await?;
        if job.is_some_and(|id| !event.routing_key.ends_with(&format!(".{id}"))) {
            continue;
        }
        writeln!(out, "{}", event.body)?;
        out.flush()?;
        let terminal =
            ["completed", "failed", "cancelled"].iter().any(|k| event.routing_key.starts_with(&format!("job.{k}.")));
        if job.is_some() && terminal {
            return Ok(());
        }
    }
}

/// `10m`, `90s`, `2h`, `1d` back from `now`, or an RFC 3339 time.
pub fn parse_since(text: &str, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("--since: {text:?} is neither a duration (10m, 2h, 1d) nor an RFC 3339 time"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => anyhow::bail!("--since: unit of {text:?} must be s, m, h or d"),
    };
    Ok(now - chrono::Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_duration_back_or_a_time() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_since("10m", now).unwrap().to_rfc3339(), "2026-12-02T11:50:00+00:00");
        assert_eq!(parse_since("1d", now).unwrap().to_rfc3339(), "2026-12-01T12:00:00+00:00");
        assert_eq!(parse_since("2026-12-02T11:00:00Z", now).unwrap().to_rfc3339(), "2026-12-02T11:00:00+00:00");
        for bad in ["", "m", "10", "10w", "yesterday"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }
}
