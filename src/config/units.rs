//! The units configuration values are written in: sizes ([`ByteSize`])
//! and durations ([`Dur`]), as integers or text with a unit.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte count, written as an integer or with a unit: `65536`, `64KiB`,
/// `1 MiB`, `10MB`, `1GiB`, `2TiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` of `unit` (any case, maybe empty: bytes); `s` is the whole text, for errors.
    fn from_parts(n: u64, unit: &str, s: &str) -> Result<Self, String> {
        let mult: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "kb" => 1000,
            "m" | "mib" => 1 << 20,
            "mb" => 1_000_000,
            "g" | "gib" => 1 << 30,
            "gb" => 1_000_000_000,
            "t" | "tib" => 1 << 40,
            "tb" => 1_000_000_000_000,
            u => return Err(format!("unknown size unit `{u}` in `{s}`")),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] =
            [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (m, u) in UNITS {
            if self.0 >= m && self.0 % m == 0 {
                return write!(f, "{}{u}", self.0 / m);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// Values written as a bare integer or a string with a unit. `FromStr` splits
/// the text (trimmed) into its leading digits and the unit (trimmed) and
/// hands both to the type's `from_parts`; serde writes the display form and
/// reads either an integer (`$from_int`) or the text.
macro_rules! int_or_unit {
    ($t:ty, $what:literal, $from_int:expr) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let s = s.trim();
                let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
                let (num, unit) = s.split_at(split);
                let n: u64 = num.parse().map_err(|_| format!(concat!("`{}` is not ", $what), s))?;
                Self::from_parts(n, unit.trim(), s)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    Int(u64),
                    Str(String),
                }
                match Raw::deserialize(d)? {
                    Raw::Int(n) => Ok($from_int(n)),
                    Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
                }
            }
        }
    };
}

int_or_unit!(ByteSize, "a size", ByteSize);
int_or_unit!(Dur, "a duration", |n| Dur(Duration::from_secs(n)));

/// A duration, written as seconds or with a unit: `90`, `500ms`, `30s`,
/// `15m`, `24h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// `n` of `unit` (maybe empty: seconds); `s` is the whole text, for errors.
    fn from_parts(n: u64, unit: &str, s: &str) -> Result<Self, String> {
        let ms = match unit {
            "ms" => Some(n),
            "" | "s" => n.checked_mul(1000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            u => return Err(format!("unknown duration unit `{u}` in `{s}` (use ms, s, m, h, d)")),
        };
        ms.map(|ms| Dur(Duration::from_millis(ms))).ok_or_else(|| format!("`{s}` is too long"))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis() as u64;
        for (m, u) in [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")] {
            if ms >= m && ms % m == 0 {
                return write!(f, "{}{u}", ms / m);
            }
        }
        write!(f, "{ms}ms")
    }
}
