//! W3C Trace Context (`traceparent`): taken from the HTTP request (or
//! started there), carried in the job message's AMQP headers, and recorded
//! as `trace_id` on the API's and the worker's log spans, so one job can be
//! followed across processes.

use std::fmt;

/// A parsed or freshly started trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: String,
    pub parent_id: String,
    pub flags: String,
}

impl TraceParent {
    /// `00-<32 hex>-<16 hex>-<2 hex>`, not all zeros.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        match parts.as_slice() {
            [version, trace, parent, flags]
                if hex(version, 2)
                    && *version != "ff"
                    && hex(trace, 32)
                    && hex(parent, 16)
                    && hex(flags, 2)
                    && trace.bytes().any(|b| b != b'0')
                    && parent.bytes().any(|b| b != b'0') =>
            {
                Some(TraceParent {
                    trace_id: trace.to_string(),
                    parent_id: parent.to_string(),
                    flags: flags.to_string(),
                })
            }
            _ => None,
        }
    }

    /// A new trace, for requests that arrive without one.
    pub fn start() -> TraceParent {
        TraceParent { trace_id: random_hex(16), parent_id: random_hex(8), flags: "01".into() }
    }

    /// The same trace, one hop further (a new parent id).
    pub fn child(&self) -> TraceParent {
        TraceParent { parent_id: random_hex(8), ..self.clone() }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.parent_id, self.flags)
    }
}

fn random_hex(bytes: usize) -> String {
    let id = uuid::Uuid::new_v4();
    hex::encode(&id.as_bytes()[..bytes.min(16)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_invalid_traceparents() {
        let t = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(TraceParent::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
        assert!(TraceParent::parse("garbage").is_none());
        let c = t.child();
        assert_eq!(c.trace_id, t.trace_id);
        assert_ne!(c.parent_id, t.parent_id);
        assert_eq!(TraceParent::start().trace_id.len(), 32);
    }
}
