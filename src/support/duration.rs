//! Durations as written in the config: `90s`, `10m`, `12h`, `1h 30m`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written the human way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}` ({e}); write e.g. \"90s\", \"10m\", \"12h\""
            ))
        })
    }
}

/// Human form, e.g. `1h 30m`.
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
