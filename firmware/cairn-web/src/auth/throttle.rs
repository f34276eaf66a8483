//! Login throttling per address and per account, in memory.

use std::collections::HashMap;
use std::sync::Mutex;

/// Failed attempts from one key (an address or an account).
#[derive(Debug, Clone, Copy, Default)]
struct Fails {
    count: u32,
    window_start: u64,
    locked_until: u64,
}

/// Failures allowed per account in a window before it is locked for a while.
pub const ACCOUNT_FAILS: u32 = 5;
/// Failures allowed per address in a window.
pub const ADDRESS_FAILS: u32 = 20;
/// The window (and the longest lock), seconds.
pub const FAIL_WINDOW_SECS: u64 = 900;

/// Login throttling per address and per account (in memory: a restart forgets it).
#[derive(Debug, Default)]
pub struct Throttle {
    fails: Mutex<HashMap<String, Fails>>,
}

impl Throttle {
    /// Seconds to wait before `key` may try again, if locked.
    pub fn locked(&self, key: &str, now: u64) -> Option<u64> {
        let g = self.fails.lock().ok()?;
        g.get(key)
            .filter(|f| f.locked_until > now)
            .map(|f| f.locked_until - now)
    }

    /// Count a failure; lock after `limit` in the window (60 s, doubling, at most the window).
    pub fn fail(&self, key: &str, limit: u32, now: u64) {
        let Ok(mut g) = self.fails.lock() else {
            return;
        };
        let f = g.entry(key.to_string()).or_default();
        if now.saturating_sub(f.window_start) > FAIL_WINDOW_SECS {
            *f = Fails {
                count: 0,
                window_start: now,
                locked_until: 0,
            };
        }
        f.count += 1;
        if f.count >= limit {
            let extra = (f.count - limit).min(4);
            f.locked_until = now + (60u64 << extra).min(FAIL_WINDOW_SECS);
        }
    }

    /// Forget the failures of `key` (after a success).
    pub fn clear(&self, key: &str) {
        if let Ok(mut g) = self.fails.lock() {
            g.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_locks_and_unlocks() {
        let t = Throttle::default();
        for _ in 0..ACCOUNT_FAILS - 1 {
            t.fail("u:a", ACCOUNT_FAILS, 1000);
        }
        assert_eq!(t.locked("u:a", 1000), None);
        t.fail("u:a", ACCOUNT_FAILS, 1000);
        assert_eq!(t.locked("u:a", 1000), Some(60));
        assert_eq!(t.locked("u:a", 1061), None);
        t.clear("u:a");
        assert_eq!(t.locked("u:a", 1000), None);
    }
}
