//! Per-address token bucket for login attempts (ASVS 5.0 V6.1.1): a burst of
//! `BURST` attempts, then one every `REFILL_SECS` seconds. Kept in memory per instance; behind a
//! load balancer the per-account lock-out in the database is what holds across instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) * REFILL_SECS).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
}
