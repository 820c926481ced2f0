//! What refused requests may write to the audit log: each distinct refusal once per window (up
//! to a bound per source and per window); repeats, and whatever is past the bounds, are counted
//! and written as one summary record per window. So the audit log's growth is bounded by a
//! constant rate whatever an attacker sends, and by legitimate work otherwise (2,130 refused
//! hellos once filled 24 MiB in 2 s and stopped the server).
//!
//! Pure: time is passed in, so the policy is tested without clocks. The store writer owns one
//! [`RefusalFilter`] and asks it about every refusal; it calls [`RefusalFilter::roll`] on a
//! timer to write the summary of a finished window.
//!
//! Invariants:
//! - Per window of [`REFUSAL_WINDOW`]: a refusal is recorded on its own only the first time its
//!   key (source, code, subject, action, document) is seen, and only while its source has had
//!   fewer than [`MAX_RECORDED_PER_SOURCE`] and the window fewer than
//!   [`MAX_RECORDED_PER_WINDOW`] individual records; then one summary record names at most
//!   [`MAX_SUMMARY_SOURCES`] sources (the busiest) and the total. Every refusal is either
//!   recorded or counted in a summary: none disappears. Worst case, whatever an attacker
//!   sends: 300 records of at most ~1 KiB and one summary per minute.
//! - Memory is bounded: at most [`MAX_TRACKED_SOURCES`] sources and [`MAX_TRACKED_KEYS`] keys
//!   (8-byte hashes) per window; the rest are counted together.
//! - Attacker-controlled text is cut to [`MAX_AUDIT_FIELD_CHARS`] characters before it is
//!   recorded ([`clip`]).

use std::collections::HashMap;
use std::time::Duration;

use crate::security::audit::{AuditEvent, SourceCount};

/// Length of one counting window.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Individual refusal records per source per window.
pub const MAX_RECORDED_PER_SOURCE: u32 = 50;
/// Individual refusal records per window, all sources together.
pub const MAX_RECORDED_PER_WINDOW: u32 = 300;
/// Distinct refusal keys remembered per window.
pub const MAX_TRACKED_KEYS: usize = 65_536;
/// Sources named in one summary record (the ones with the most refusals).
pub const MAX_SUMMARY_SOURCES: usize = 32;
/// Sources counted one by one in a window; further sources are counted together.
pub const MAX_TRACKED_SOURCES: usize = 4096;
/// Longest text field of a refusal record, in characters.
pub const MAX_AUDIT_FIELD_CHARS: usize = 160;
/// Source name used when the peer address is unknown.
pub const UNKNOWN_SOURCE: &str = "unknown";

/// Cuts attacker-controlled text to [`MAX_AUDIT_FIELD_CHARS`] characters (marking the cut).
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_AUDIT_FIELD_CHARS) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…(+{} bytes)", &s[..i], s.len() - i),
    }
}

/// Whether a refusal is recorded on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write its own audit record.
    Record,
    /// Count it for the window's summary only.
    Count,
}

#[derive(Default)]
struct Source {
    /// Refusals this window.
    count: u64,
    /// Of which recorded individually.
    recorded: u32,
}

/// The refusal policy. See the module documentation.
pub struct RefusalFilter {
    /// Start of the current window, in the caller's clock (milliseconds).
    window_start_ms: u64,
    sources: HashMap<String, Source>,
    /// Hashes of the refusal keys recorded this window.
    keys: std::collections::HashSet<u64>,
    /// Refusals of sources beyond [`MAX_TRACKED_SOURCES`] this window.
    untracked: u64,
    /// Individual records written this window.
    recorded: u32,
    /// Refusals counted (not recorded) this window.
    counted: u64,
}

impl RefusalFilter {
    /// A filter whose first window starts at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        RefusalFilter {
            window_start_ms: now_ms,
            sources: HashMap::new(),
            keys: std::collections::HashSet::new(),
            untracked: 0,
            recorded: 0,
            counted: 0,
        }
    }

    /// Decides about one refusal from `source`, whose key (code, subject, action, document)
    /// hashes to `key`, at `now_ms`. A finished window is rolled first; its summary, if any, is
    /// returned to be written before this refusal.
    pub fn admit(&mut self, source: &str, key: u64, now_ms: u64) -> (Verdict, Option<AuditEvent>) {
        let summary = self.roll(now_ms);
        let tracked = self.sources.len() < MAX_TRACKED_SOURCES || self.sources.contains_key(source);
        let verdict = if tracked {
            let key = ahash::RandomState::with_seeds(7, 11, 13, 17).hash_one((source, key));
            let new_key = !self.keys.contains(&key) && self.keys.len() < MAX_TRACKED_KEYS;
            let s = self.sources.entry(source.to_string()).or_default();
            s.count += 1;
            if new_key
                && s.recorded < MAX_RECORDED_PER_SOURCE
                && self.recorded < MAX_RECORDED_PER_WINDOW
            {
                s.recorded += 1;
                self.recorded += 1;
                self.keys.insert(key);
                Verdict::Record
            } else {
                Verdict::Count
            }
        } else {
            self.untracked += 1;
            Verdict::Count
        };
        if verdict == Verdict::Count {
            self.counted += 1;
        }
        (verdict, summary)
    }

    /// Ends the window if it is over at `now_ms`: returns the summary of the refusals that were
    /// counted and not recorded (`None` if there were none) and starts a new window.
    pub fn roll(&mut self, now_ms: u64) -> Option<AuditEvent> {
        let window_ms = REFUSAL_WINDOW.as_millis() as u64;
        if now_ms < self.window_start_ms.saturating_add(window_ms) {
            return None;
        }
        let summary = self.summary(now_ms);
        *self = RefusalFilter::new(now_ms);
        summary
    }

    /// The summary of the current window so far (`None` if nothing was only counted).
    pub fn summary(&self, now_ms: u64) -> Option<AuditEvent> {
        if self.counted == 0 {
            return None;
        }
        let mut busiest: Vec<SourceCount> = self
            .sources
            .iter()
            .filter(|(_, s)| s.count > u64::from(s.recorded))
            .map(|(name, s)| SourceCount {
                source: name.clone(),
                refused: s.count,
                recorded: u64::from(s.recorded),
            })
            .collect();
        busiest.sort_by(|a, b| b.refused.cmp(&a.refused).then(a.source.cmp(&b.source)));
        let named: u64 = busiest
            .iter()
            .skip(MAX_SUMMARY_SOURCES)
            .map(|s| s.refused - s.recorded)
            .sum();
        busiest.truncate(MAX_SUMMARY_SOURCES);
        Some(AuditEvent::RefusalsCounted {
            from_ms: self.window_start_ms,
            to_ms: now_ms,
            counted: self.counted,
            sources: busiest,
            other_sources: named + self.untracked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(e: &AuditEvent) -> u64 {
        match e {
            AuditEvent::RefusalsCounted { counted, .. } => *counted,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_repeated_refusal_is_recorded_once_then_counted() {
        let mut f = RefusalFilter::new(0);
        let mut records = 0;
        for i in 0..10_000u64 {
            let (v, summary) = f.admit("10.0.0.1", 42, i);
            assert!(summary.is_none());
            if v == Verdict::Record {
                records += 1;
            }
        }
        assert_eq!(records, 1);
        let s = f
            .roll(REFUSAL_WINDOW.as_millis() as u64)
            .expect("a summary");
        assert_eq!(counted(&s), 9_999);
        match s {
            AuditEvent::RefusalsCounted { sources, .. } => {
                assert_eq!(sources.len(), 1);
                assert_eq!(sources[0].refused, 10_000);
                assert_eq!(sources[0].recorded, 1);
            }
            _ => unreachable!(),
        }
        // A new window records again; an empty window writes nothing.
        assert_eq!(f.admit("10.0.0.1", 42, 60_001).0, Verdict::Record);
        assert!(f.roll(60_000 + 59_999).is_none());
    }

    #[test]
    fn distinct_refusals_of_one_source_are_recorded_up_to_its_bound() {
        let mut f = RefusalFilter::new(0);
        let records = (0..1000u64)
            .filter(|&k| f.admit("10.0.0.1", k, 1).0 == Verdict::Record)
            .count();
        assert_eq!(records as u32, MAX_RECORDED_PER_SOURCE);
        // Another source still gets its own.
        assert_eq!(f.admit("10.0.0.2", 1, 2).0, Verdict::Record);
    }

    #[test]
    fn many_sources_are_bounded_in_records_memory_and_summary_size() {
        let mut f = RefusalFilter::new(0);
        let mut records = 0u64;
        let n = 3 * MAX_TRACKED_SOURCES as u64;
        for i in 0..n {
            for k in 0..3 {
                if f.admit(&format!("source-{i}"), k, 1).0 == Verdict::Record {
                    records += 1;
                }
            }
        }
        assert_eq!(records, u64::from(MAX_RECORDED_PER_WINDOW));
        assert!(f.sources.len() <= MAX_TRACKED_SOURCES);
        let s = f.roll(60_000).unwrap();
        match &s {
            AuditEvent::RefusalsCounted {
                sources,
                other_sources,
                counted,
                ..
            } => {
                assert!(sources.len() <= MAX_SUMMARY_SOURCES);
                let listed: u64 = sources.iter().map(|s| s.refused - s.recorded).sum();
                // Nothing disappears: every refusal is recorded or counted in the summary.
                assert_eq!(listed + other_sources, *counted);
                assert_eq!(*counted + records, 3 * n);
            }
            _ => unreachable!(),
        }
        // The summary record itself is small.
        let bytes = rmp_serde::to_vec_named(&s).unwrap();
        assert!(bytes.len() < 4096, "{}", bytes.len());
    }

    #[test]
    fn long_text_is_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(5000);
        let c = clip(&long);
        assert!(c.chars().count() < MAX_AUDIT_FIELD_CHARS + 30, "{c}");
        assert!(c.contains("(+"), "{c}");
    }
}
