//! The progress line of `put` and `get`: confirmed bytes out of the total,
//! how many were transferred and how many skipped (already on the server,
//! or kept from an earlier run), the rate and the time left. Every field
//! has a fixed width, so the line fits 80 columns whatever the numbers.
//! Sizes for people ([`human`]) are written here too, for the CLI.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Columns the line may use: a terminal of 80 minus the cursor's cell.
const WIDTH: usize = 79;

/// `bytes` in binary units: the value and the index of its unit (0 for
/// bytes), stepping up while the value is at least `step_at` and one of
/// `units` is left.
fn scaled(bytes: u64, step_at: f64, units: usize) -> (f64, usize) {
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= step_at && u + 1 < units {
        v /= 1024.0;
        u += 1;
    }
    (v, u)
}

/// Sizes for people: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    match scaled(bytes, 1024.0, UNITS.len()) {
        (_, 0) => format!("{bytes} B"),
        (v, u) => format!("{v:.1} {}", UNITS[u]),
    }
}

/// `1023.9M`: at most 7 cells (a unit up from 1000, not 1024).
fn short(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    match scaled(bytes, 1000.0, UNITS.len()) {
        (_, 0) => format!("{bytes}B"),
        (v, u) => format!("{v:.1}{}", UNITS[u]),
    }
}

/// `1h02m`, `12m05s`, `42s`: at most 6 cells (`>99h` past that).
fn short_time(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=359_999 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => ">99h".into(),
    }
}

/// One progress line, at most 79 columns:
/// `[#####-----]  52% 512.0M/1.0G  sent 300.0M  skip 212.0M  12.3M/s  ETA 41s`.
/// `total` is `None` for standard input (size unknown); `done` is what the
/// server confirmed (put) or what was verified (get); `skip_word` names
/// the skipped bytes (`skip` for chunks the server had, `kept` for a
/// resumed download's prefix).
pub fn progress_line(
    done: u64,
    total: Option<u64>,
    sent: u64,
    skipped: u64,
    skip_word: &str,
    per_sec: f64,
) -> String {
    let rate = if per_sec >= 1.0 { format!("{}/s", short(per_sec as u64)) } else { "-".into() };
    let (bar, pct, size, eta) = match total {
        Some(t) => {
            let frac = if t == 0 { 1.0 } else { (done as f64 / t as f64).clamp(0.0, 1.0) };
            let filled = (frac * 12.0).round() as usize;
            let eta = if done >= t {
                "0s".to_string()
            } else if per_sec >= 1.0 {
                short_time(Duration::from_secs_f64((t - done) as f64 / per_sec))
            } else {
                "?".into()
            };
            (
                format!("[{}{}]", "#".repeat(filled), "-".repeat(12 - filled)),
                format!("{:>3}%", (frac * 100.0).floor() as u32),
                format!("{}/{}", short(done), short(t)),
                eta,
            )
        }
        None => ("[ stdin    ]".to_string(), "    ".to_string(), short(done), "?".to_string()),
    };
    let word: String = skip_word.chars().take(4).collect();
    let line = format!(
        "{bar} {pct} {size:<15} sent {:>7} {word} {:>7} {rate:>9} ETA {eta}",
        short(sent),
        short(skipped)
    );
    line.chars().take(WIDTH).collect()
}

/// A progress display: an indicatif bar whose whole text is
/// [`progress_line`], redrawn a few times a second. Hidden when not shown.
pub(super) struct Progress {
    bar: ProgressBar,
    total: Option<u64>,
    skip_word: &'static str,
    /// Confirmed bytes, transferred bytes (on the wire), skipped bytes.
    pub done: AtomicU64,
    pub sent: AtomicU64,
    pub skipped: AtomicU64,
    started: Instant,
    /// Bytes done when this run started (a resumed download's prefix
    /// does not count towards the rate).
    base: AtomicU64,
}

impl Progress {
    pub fn new(total: Option<u64>, show: bool, skip_word: &'static str) -> Arc<Self> {
        let bar = if show {
            ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(5))
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
        let p = Arc::new(Self {
            bar,
            total,
            skip_word,
            done: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            started: Instant::now(),
            base: AtomicU64::new(0),
        });
        if show {
            // Redraw on a timer too, so that the rate and ETA move while a
            // large chunk is in flight.
            let weak = Arc::downgrade(&p);
            std::thread::spawn(move || {
                while let Some(p) = weak.upgrade() {
                    if p.bar.is_finished() {
                        return;
                    }
                    p.redraw();
                    drop(p);
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
        p
    }

    /// Marks bytes already done before this run started.
    pub fn start_at(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.skipped.store(done, Ordering::Relaxed);
        self.base.store(done, Ordering::Relaxed);
        self.redraw();
    }

    /// Bytes confirmed by sending them.
    pub fn sent(&self, raw: u64, wire: u64) {
        self.done.fetch_add(raw, Ordering::Relaxed);
        self.sent.fetch_add(wire, Ordering::Relaxed);
        self.redraw();
    }

    /// Bytes confirmed without sending them.
    pub fn skipped(&self, raw: u64) {
        self.done.fetch_add(raw, Ordering::Relaxed);
        self.skipped.fetch_add(raw, Ordering::Relaxed);
        self.redraw();
    }

    fn redraw(&self) {
        if self.bar.is_hidden() {
            return;
        }
        let done = self.done.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let moved = done.saturating_sub(self.base.load(Ordering::Relaxed));
        let per_sec = if elapsed > 0.5 { moved as f64 / elapsed } else { 0.0 };
        self.bar.set_message(progress_line(
            done,
            self.total,
            self.sent.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.skip_word,
            per_sec,
        ));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    /// A failed command's error line is not drawn over a stale bar.
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fit_80_columns_whatever_the_numbers() {
        let big = u64::MAX / 2;
        for (done, total, sent, skipped, rate) in [
            (0, Some(0), 0, 0, 0.0),
            (0, Some(1), 0, 0, 0.0),
            (512 << 20, Some(1 << 30), 300 << 20, 212 << 20, 12.3e6),
            (999 << 30, Some(1000 << 30), 999 << 30, 999 << 30, 1.0),
            (big, Some(big), big, big, 1e18),
            (5, None, 5, 0, 100.0),
            (big, None, big, big, 1e18),
        ] {
            for word in ["skip", "kept"] {
                let line = progress_line(done, total, sent, skipped, word, rate);
                assert!(line.chars().count() < 80, "{} columns: {line}", line.chars().count());
                assert!(line.contains("sent") && line.contains(word) && line.contains("ETA"), "{line}");
            }
        }
    }

    #[test]
    fn line_shows_confirmed_transferred_skipped_rate_and_eta() {
        let line = progress_line(512 << 20, Some(1 << 30), 300 << 20, 212 << 20, "skip", 16.0 * 1048576.0);
        assert!(line.starts_with("[######------]  50% 512.0M/1.0G"), "{line}");
        assert!(line.contains("sent  300.0M skip  212.0M"), "{line}");
        assert!(line.contains("16.0M/s") && line.ends_with("ETA 32s"), "{line}");
    }
}
