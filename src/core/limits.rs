//! Per-client limits: a request rate (fixed windows, as the `RateLimit-*`
//! headers describe them) and a number of concurrent streams. Each client
//! has its own counters behind a short lock, so a client at its limit
//! never delays another.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// `ACCTSTREAM_RATE_LIMIT`: `<n>/s` or `<n>/min`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests per window.
    pub limit: u32,
    /// The window.
    pub window: Duration,
}

impl Rate {
    /// Parses `<n>/s`, `<n>/min` (also `/sec`, `/second`, `/m`, `/minute`),
    /// `n` from 1 to 1,000,000.
    pub fn parse(text: &str) -> Option<Rate> {
        let (n, unit) = text.trim().split_once('/')?;
        let limit: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))?;
        let window = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            _ => return None,
        };
        Some(Rate { limit, window })
    }
}

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// `RateLimit-Limit`.
    pub limit: u32,
    /// `RateLimit-Remaining`.
    pub remaining: u32,
    /// `RateLimit-Reset` (and `Retry-After` when refused): whole seconds
    /// until the window ends, at least 1.
    pub reset_seconds: u64,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    used: u32,
}

/// Clients kept before windows that ended are swept.
const SWEEP_AT: usize = 10_000;

/// The request-rate limiter.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    clients: Mutex<HashMap<String, Window>>,
}

impl RateLimiter {
    /// A limiter at `rate`.
    pub fn new(rate: Rate) -> RateLimiter {
        RateLimiter {
            rate,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `client` at `now`.
    pub fn check(&self, client: &str, now: Instant) -> Decision {
        let rate = self.rate;
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= SWEEP_AT {
            clients.retain(|_, w| now.duration_since(w.started) < rate.window);
        }
        let window = clients.entry(client.to_owned()).or_insert(Window {
            started: now,
            used: 0,
        });
        if now.duration_since(window.started) >= rate.window {
            *window = Window {
                started: now,
                used: 0,
            };
        }
        let allowed = window.used < rate.limit;
        if allowed {
            window.used += 1;
        }
        let left = rate
            .window
            .saturating_sub(now.duration_since(window.started));
        Decision {
            allowed,
            limit: rate.limit,
            remaining: rate.limit - window.used,
            reset_seconds: left.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

/// The concurrent-stream limiter.
#[derive(Debug)]
pub struct StreamLimiter {
    max: u32,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

/// One open stream; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamPermit {
    client: String,
    open: Arc<Mutex<HashMap<String, u32>>>,
}

impl StreamLimiter {
    /// At most `max` open streams per client.
    pub fn new(max: u32) -> StreamLimiter {
        StreamLimiter {
            max: max.max(1),
            open: Arc::default(),
        }
    }

    /// The most streams a client may have open.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// A slot for one more stream of `client`, or `None` at the limit.
    pub fn acquire(&self, client: &str) -> Option<StreamPermit> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(client.to_owned()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(StreamPermit {
            client: client.to_owned(),
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Both limits, each off when not configured.
#[derive(Debug, Default)]
pub struct Limits {
    /// `ACCTSTREAM_RATE_LIMIT`.
    pub rate: Option<RateLimiter>,
    /// `ACCTSTREAM_RATE_LIMIT_PER_TENANT`: the requests of every client of
    /// one organization together (issue 28), so that one organization
    /// cannot starve another.
    pub rate_per_tenant: Option<RateLimiter>,
    /// `ACCTSTREAM_STREAMS_PER_CLIENT`.
    pub streams: Option<StreamLimiter>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            Rate::parse("10/s"),
            Some(Rate {
                limit: 10,
                window: Duration::from_secs(1)
            })
        );
        assert_eq!(
            Rate::parse(" 600 / min ").map(|r| r.window),
            Some(Duration::from_secs(60))
        );
        for bad in ["", "10", "0/s", "10/h", "x/s", "-1/s", "2000000/s"] {
            assert_eq!(Rate::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_window_allows_its_limit_then_resets() {
        let limiter = RateLimiter::new(Rate::parse("2/min").unwrap());
        let t0 = Instant::now();
        let first = limiter.check("a", t0);
        assert_eq!(
            (first.allowed, first.remaining, first.reset_seconds),
            (true, 1, 60)
        );
        assert_eq!(limiter.check("a", t0 + Duration::from_secs(1)).remaining, 0);
        let refused = limiter.check("a", t0 + Duration::from_millis(30_500));
        assert!(!refused.allowed);
        assert_eq!(refused.reset_seconds, 30);
        // Another client is not affected.
        assert!(limiter.check("b", t0 + Duration::from_secs(2)).allowed);
        // A new window.
        let later = limiter.check("a", t0 + Duration::from_secs(60));
        assert_eq!((later.allowed, later.remaining), (true, 1));
    }

    #[test]
    fn streams_are_counted_per_client_until_dropped() {
        let limiter = StreamLimiter::new(2);
        let a1 = limiter.acquire("a").unwrap();
        let _a2 = limiter.acquire("a").unwrap();
        assert!(limiter.acquire("a").is_none());
        assert!(limiter.acquire("b").is_some());
        drop(a1);
        assert!(limiter.acquire("a").is_some());
    }
}
