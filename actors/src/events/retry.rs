//! What a delivery attempt's outcome means, and when to try again (pure: the caller gives the
//! random draw).
//!
//! Rules (also in `docs/EVENTS.md`):
//! - 2xx: delivered.
//! - 410 Gone: the endpoint is disabled (it said it wants nothing more); its events wait.
//! - timeouts, connection errors, 408, 429 and 5xx: tried again after a delay, until
//!   `max_attempts` attempts were made; then dead-lettered.
//! - any other status (3xx: redirects are not followed; other 4xx): dead-lettered at once, since
//!   sending the same bytes again cannot change the answer.
//! - The delay before attempt `n + 1` is drawn from `[d/2, d]` with
//!   `d = min(max_delay, base · 2^(n-1))` ("equal jitter": endpoints coming back after an outage
//!   are not hit by every sender at once); a `Retry-After` (seconds or an HTTP date) replaces
//!   it, capped at `max_delay`.

use std::time::{Duration, SystemTime};

/// Default attempts before an event is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 18;
/// Default first retry delay.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// Default longest retry delay.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(3600);

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The sink answered with this HTTP status (NATS: 200 for a stored publish).
    Status {
        /// The status.
        status: u16,
        /// Its `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// No answer: timeout, connection refused or reset, TLS failure, NATS unreachable.
    Failed(String),
}

/// What to do after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Delivered.
    Done,
    /// Try again after this delay.
    Retry(Duration),
    /// Give up: record a dead letter.
    Dead,
    /// Disable the endpoint (410).
    Disable,
}

/// The retry schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before dead-lettering (≥ 1).
    pub max_attempts: u32,
    /// First retry delay.
    pub base: Duration,
    /// Longest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base: DEFAULT_RETRY_BASE,
            max_delay: DEFAULT_RETRY_MAX,
        }
    }
}

impl RetryPolicy {
    /// What follows attempt number `made` (1 for the first) ending in `attempt`; `draw` is a
    /// uniform random number in `[0, 1)`.
    pub fn next(&self, made: u32, attempt: &Attempt, draw: f64) -> Next {
        let retry_after = match attempt {
            Attempt::Status { status, .. } if (200..300).contains(status) => return Next::Done,
            Attempt::Status { status: 410, .. } => return Next::Disable,
            Attempt::Status {
                status,
                retry_after,
            } if *status == 408 || *status == 429 || (500..600).contains(status) => *retry_after,
            Attempt::Status { .. } => return Next::Dead,
            Attempt::Failed(_) => None,
        };
        if made >= self.max_attempts {
            return Next::Dead;
        }
        Next::Retry(match retry_after {
            Some(d) => d.min(self.max_delay),
            None => self.backoff(made, draw),
        })
    }

    /// The jittered delay after attempt `made`.
    pub fn backoff(&self, made: u32, draw: f64) -> Duration {
        let exp = made.saturating_sub(1).min(32);
        let full = self
            .base
            .saturating_mul(1u32 << exp.min(31))
            .min(self.max_delay);
        full.mul_f64(0.5 + 0.5 * draw.clamp(0.0, 1.0))
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date (a date in the past is zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> Attempt {
        Attempt::Status {
            status: s,
            retry_after: None,
        }
    }

    #[test]
    fn outcomes_map_to_what_follows() {
        let p = RetryPolicy::default();
        assert_eq!(p.next(1, &status(200), 0.5), Next::Done);
        assert_eq!(p.next(1, &status(204), 0.5), Next::Done);
        assert_eq!(p.next(1, &status(410), 0.5), Next::Disable);
        for s in [301, 400, 401, 403, 404, 413] {
            assert_eq!(p.next(1, &status(s), 0.5), Next::Dead, "{s}");
        }
        for a in [
            status(408),
            status(429),
            status(500),
            status(503),
            Attempt::Failed("timed out".into()),
        ] {
            assert!(matches!(p.next(1, &a, 0.5), Next::Retry(_)), "{a:?}");
            assert_eq!(p.next(p.max_attempts, &a, 0.5), Next::Dead, "{a:?}");
        }
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 40,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        };
        for made in 1..40u32 {
            let full = Duration::from_millis(100)
                .saturating_mul(1 << (made - 1).min(31))
                .min(Duration::from_secs(10));
            let lo = p.backoff(made, 0.0);
            let hi = p.backoff(made, 0.999_999);
            assert_eq!(lo, full / 2, "attempt {made}");
            assert!(hi <= full && hi > full.mul_f64(0.99), "attempt {made}");
        }
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(3, 0.0), Duration::from_millis(200));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(10),
            max_delay: Duration::from_secs(60),
        };
        let a = |secs| Attempt::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(p.next(1, &a(3), 0.0), Next::Retry(Duration::from_secs(3)));
        assert_eq!(
            p.next(1, &a(7200), 0.0),
            Next::Retry(Duration::from_secs(60))
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
