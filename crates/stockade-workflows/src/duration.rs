//! ISO-8601 durations as workflows write them (`PT5M`, `PT1H30M`, `P1D`, `PT0.5S`).
//!
//! Only days, hours, minutes and seconds: months and years have no fixed length, so
//! they are refused rather than guessed.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written in ISO-8601 form; keeps the text it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoDuration {
    pub duration: Duration,
    pub text: String,
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parse `P[nD][T[nH][nM][n[.f]S]]`.
pub fn parse(text: &str) -> Result<IsoDuration, String> {
    let bad = || format!("`{text}` is not an ISO-8601 duration like PT30S, PT5M, PT1H or P1D");
    let rest = text.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(bad()),
        None => (rest, None),
    };
    if date.is_empty() && time.is_none() {
        return Err(bad());
    }
    let mut millis: u128 = 0;
    if !date.is_empty() {
        let days = date.strip_suffix('D').ok_or_else(bad)?;
        millis += number(days, bad)? * 86_400;
    }
    if let Some(mut t) = time {
        for (unit, scale) in [('H', 3_600_000u128), ('M', 60_000), ('S', 1_000)] {
            if let Some(i) = t.find(unit) {
                millis += number(&t[..i], bad)? * scale / 1000;
                t = &t[i + 1..];
            }
        }
        if !t.is_empty() {
            return Err(bad());
        }
    }
    let millis = u64::try_from(millis).map_err(|_| bad())?;
    Ok(IsoDuration {
        duration: Duration::from_millis(millis),
        text: text.to_owned(),
    })
}

/// A decimal number of units, returned in thousandths.
fn number(s: &str, bad: impl Fn() -> String) -> Result<u128, String> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || whole.len() > 9 || frac.len() > 3 {
        return Err(bad());
    }
    if !whole
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let w: u128 = whole.parse().map_err(|_| bad())?;
    let f: u128 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    Ok(w * 1000 + f)
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for IsoDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An ISO-8601 duration: PT30S, PT5M, PT1H30M, P1D.",
            "pattern": "^P(\\d+D)?(T(\\d+H)?(\\d+M)?(\\d+(\\.\\d{1,3})?S)?)?$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_forms_and_refuses_the_rest() {
        let ms = |s: &str| parse(s).map(|d| d.duration.as_millis());
        assert_eq!(ms("PT5M"), Ok(300_000));
        assert_eq!(ms("PT1H30M"), Ok(5_400_000));
        assert_eq!(ms("P1D"), Ok(86_400_000));
        assert_eq!(ms("P1DT1S"), Ok(86_401_000));
        assert_eq!(ms("PT0.5S"), Ok(500));
        for bad in ["", "P", "PT", "5m", "PT5", "P1M", "PT-1S", "PT1S5M", "P1Y"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
