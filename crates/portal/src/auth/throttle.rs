//! Per-address token bucket for sign-in attempts and unauthenticated API calls (ASVS 5.0
//! V6.1.1): a burst of `BURST` attempts, then one every `REFILL_SECS` seconds. Kept in memory
//! per instance; behind a load balancer the per-account lock-out in the database is what holds
//! across instances.
//!
//! And `AnonymousAudit`, which keeps traffic nobody signed in for from writing to the audit log
//! without bound: it lets through the first event of each address in each minute.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BURST: f64 = 10.0;
pub const REFILL_SECS: f64 = 6.0;
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Default)]
pub struct AddressThrottle {
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
}

impl AddressThrottle {
    /// Take one attempt for `addr`; `Err(seconds)` says how long until the next is allowed.
    pub fn attempt(&self, addr: &str) -> Result<(), u64> {
        self.attempt_at(addr, Instant::now())
    }

    /// Whether `addr` may try now, without spending an attempt: for steps that spend one only
    /// when the attempt fails.
    pub fn check(&self, addr: &str) -> Result<(), u64> {
        self.check_at(addr, Instant::now())
    }

    fn check_at(&self, addr: &str, now: Instant) -> Result<(), u64> {
        let Ok(buckets) = self.buckets.lock() else {
            return Ok(());
        };
        match buckets.get(addr) {
            Some((tokens, at)) => {
                let tokens =
                    (tokens + now.duration_since(*at).as_secs_f64() / REFILL_SECS).min(BURST);
                wait(tokens)
            }
            None => Ok(()),
        }
    }

    fn attempt_at(&self, addr: &str, now: Instant) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() > MAX_TRACKED {
            buckets.retain(|_, (tokens, at)| {
                *tokens < BURST && now.duration_since(*at).as_secs_f64() < BURST * REFILL_SECS
            });
        }
        let (tokens, at) = buckets.entry(addr.to_string()).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() / REFILL_SECS).min(BURST);
        *at = now;
        let allowed = wait(*tokens);
        if allowed.is_ok() {
            *tokens -= 1.0;
        }
        allowed
    }
}

/// `Err(seconds until one token is there)` when the bucket holds less than one.
fn wait(tokens: f64) -> Result<(), u64> {
    if tokens >= 1.0 {
        Ok(())
    } else {
        Err(((1.0 - tokens) * REFILL_SECS).ceil() as u64)
    }
}

/// How long a window of `AnonymousAudit` lasts, and how many events it lets through in all:
/// the cap bounds the writes even from an attacker with very many addresses.
pub const AUDIT_WINDOW: Duration = Duration::from_secs(60);
pub const AUDIT_WINDOW_CAP: usize = 1_000;

/// Which events of unauthenticated traffic are written to the audit log: the first from each
/// address in each one-minute window, at most `AUDIT_WINDOW_CAP` per window. The first event
/// says that later ones in the window are not written one by one; the throttle bounds them.
#[derive(Clone, Default)]
pub struct AnonymousAudit {
    window: Arc<Mutex<(Option<Instant>, HashSet<String>)>>,
}

impl AnonymousAudit {
    pub fn should_record(&self, addr: &str) -> bool {
        self.should_record_at(addr, Instant::now())
    }

    fn should_record_at(&self, addr: &str, now: Instant) -> bool {
        let Ok(mut window) = self.window.lock() else {
            return false;
        };
        let (started, seen) = &mut *window;
        if started.is_none_or(|s| now.duration_since(s) >= AUDIT_WINDOW) {
            *started = Some(now);
            seen.clear();
        }
        seen.len() < AUDIT_WINDOW_CAP && seen.insert(addr.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t = AddressThrottle::default();
        let start = Instant::now();
        for _ in 0..10 {
            assert!(t.attempt_at("1.2.3.4", start).is_ok());
        }
        assert!(t.attempt_at("1.2.3.4", start).is_err());
        assert!(
            t.attempt_at("5.6.7.8", start).is_ok(),
            "other addresses are not affected"
        );
        assert!(t
            .attempt_at("1.2.3.4", start + Duration::from_secs(7))
            .is_ok());
    }

    #[test]
    fn check_spends_nothing() {
        let t = AddressThrottle::default();
        let start = Instant::now();
        for _ in 0..20 {
            assert!(t.check_at("1.2.3.4", start).is_ok());
        }
        for _ in 0..10 {
            assert!(t.attempt_at("1.2.3.4", start).is_ok());
        }
        assert!(t.check_at("1.2.3.4", start).is_err());
    }

    #[test]
    fn anonymous_audit_records_each_address_once_per_window_and_caps_the_window() {
        let log = AnonymousAudit::default();
        let start = Instant::now();
        assert!(log.should_record_at("1.2.3.4", start));
        assert!(!log.should_record_at("1.2.3.4", start + Duration::from_secs(59)));
        assert!(log.should_record_at("1.2.3.4", start + Duration::from_secs(61)));
        let later = start + Duration::from_secs(200);
        let recorded = (0..AUDIT_WINDOW_CAP + 50)
            .filter(|i| log.should_record_at(&format!("10.0.{}.{}", i / 256, i % 256), later))
            .count();
        assert_eq!(recorded, AUDIT_WINDOW_CAP);
    }
}
