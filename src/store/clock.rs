//! Time as the store sees it, injectable so that tests can move past grace
//! periods, leases and expiry without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Told that a reference clock (the metadata database's) read
    /// `reference_ms` when the wall clock read `wall_ms`: a clock that
    /// follows the reference ([`DbClock`]) takes the difference; others
    /// ignore it.
    fn follow(&self, _reference_ms: u64, _wall_ms: u64) {}
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// The wall clock, moved by the difference to a reference clock it was
/// last told of ([`Clock::follow`]): on a store whose metadata is in
/// PostgreSQL, the database's clock, sampled when the store opens and every
/// [`DB_CLOCK_EVERY`] after. Deadlines one node writes and another reads
/// (leases, claims, grace periods, reader rows, expiries) are then on one
/// clock, within a sample's round trip, whatever the nodes' own clocks say.
#[derive(Debug, Default)]
pub struct DbClock {
    offset_ms: AtomicI64,
}

/// How often a [`DbClock`]'s store samples the database's clock.
pub const DB_CLOCK_EVERY: Duration = Duration::from_secs(30);

impl DbClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl Clock for DbClock {
    fn now_ms(&self) -> u64 {
        SystemClock.now_ms().saturating_add_signed(self.offset_ms.load(Ordering::Relaxed))
    }

    fn follow(&self, reference_ms: u64, wall_ms: u64) {
        self.offset_ms.store(reference_ms as i64 - wall_ms as i64, Ordering::Relaxed);
    }
}

/// A clock that starts at the wall clock's time and moves only when told.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(SystemClock.now_ms())))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_db_clock_runs_at_the_wall_clock_plus_the_last_difference() {
        let c = DbClock::new();
        let wall = SystemClock.now_ms();
        assert!(c.now_ms().abs_diff(wall) < 1_000, "no difference told yet");
        c.follow(wall + 60_000, wall);
        assert!(c.now_ms().abs_diff(wall + 60_000) < 1_000, "a minute ahead");
        c.follow(wall - 5_000, wall);
        assert!(c.now_ms().abs_diff(wall - 5_000) < 1_000, "five seconds behind");
        let manual = ManualClock::new();
        let before = manual.now_ms();
        manual.follow(wall + 60_000, wall);
        assert_eq!(manual.now_ms(), before, "a manual clock follows no one");
    }
}
