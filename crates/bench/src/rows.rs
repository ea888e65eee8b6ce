//! Rows on their way to the database: one value type for both engines, batches of rows per
//! table, and the portal's text encodings of times and dates (fixed-width UTC, see
//! `records_domain::db::ts`) written without the `time` crate's formatter, which would
//! dominate a load of tens of millions of rows.

use std::io::Write;

use uuid::Uuid;

/// A column value. `Static` and `Uuid` avoid an allocation per value for the common cases.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Static(&'static str),
    Text(String),
    Uuid(Uuid),
    /// Microseconds since the Unix epoch, stored as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    Ts(i64),
    /// Days since the Unix epoch, stored as `YYYY-MM-DD`.
    Date(i64),
}

impl Val {
    pub fn opt_uuid(id: Option<Uuid>) -> Self {
        id.map_or(Val::Null, Val::Uuid)
    }

    /// The value as SQL text (what both engines store for every non-numeric column).
    pub fn to_text(&self) -> Option<String> {
        match self {
            Val::Null => None,
            Val::Int(n) => Some(n.to_string()),
            Val::Real(x) => Some(x.to_string()),
            Val::Static(s) => Some((*s).to_string()),
            Val::Text(s) => Some(s.clone()),
            Val::Uuid(u) => Some(u.to_string()),
            Val::Ts(micros) => Some(ts_text(*micros)),
            Val::Date(days) => Some(date_text(*days)),
        }
    }

    /// PostgreSQL's COPY text format: tab-separated, `\N` for NULL, backslash escapes.
    pub fn write_copy(&self, out: &mut Vec<u8>) {
        match self {
            Val::Null => out.extend_from_slice(b"\\N"),
            // Writing to a Vec cannot fail.
            Val::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Val::Real(x) => {
                let _ = write!(out, "{x}");
            }
            Val::Static(s) => copy_escape(out, s),
            Val::Text(s) => copy_escape(out, s),
            Val::Uuid(u) => {
                let mut buf = Uuid::encode_buffer();
                out.extend_from_slice(u.hyphenated().encode_lower(&mut buf).as_bytes());
            }
            Val::Ts(micros) => out.extend_from_slice(&ts_bytes(*micros)),
            Val::Date(days) => out.extend_from_slice(&date_bytes(*days)),
        }
    }
}

fn copy_escape(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Rows for one table, values flattened row after row.
#[derive(Debug, Clone)]
pub struct Batch {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    pub values: Vec<Val>,
}

impl Batch {
    pub fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
        Self {
            table,
            columns,
            values: Vec::new(),
        }
    }

    pub fn row<const N: usize>(&mut self, values: [Val; N]) {
        debug_assert_eq!(N, self.columns.len(), "row width of {}", self.table);
        self.values.extend(values);
    }

    pub fn rows(&self) -> usize {
        self.values.len() / self.columns.len()
    }
}

/// (year, month, day) of a day number (days since 1970-01-01), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day number of a calendar date (the inverse of `civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn put(buf: &mut [u8], at: usize, value: i64, width: usize) {
    let mut v = value;
    for i in (0..width).rev() {
        buf[at + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn date_bytes(days: i64) -> [u8; 10] {
    let (year, month, day) = civil(days);
    let mut buf = *b"0000-00-00";
    put(&mut buf, 0, year, 4);
    put(&mut buf, 5, i64::from(month), 2);
    put(&mut buf, 8, i64::from(day), 2);
    buf
}

fn ts_bytes(micros: i64) -> [u8; 27] {
    let secs = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    buf[..10].copy_from_slice(&date_bytes(days));
    put(&mut buf, 11, of_day / 3600, 2);
    put(&mut buf, 14, of_day / 60 % 60, 2);
    put(&mut buf, 17, of_day % 60, 2);
    put(&mut buf, 20, fraction, 6);
    buf
}

pub fn ts_text(micros: i64) -> String {
    String::from_utf8_lossy(&ts_bytes(micros)).into_owned()
}

pub fn date_text(days: i64) -> String {
    String::from_utf8_lossy(&date_bytes(days)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Duration, OffsetDateTime};

    #[test]
    fn times_and_dates_match_the_portals_encoding() {
        let epoch = OffsetDateTime::UNIX_EPOCH;
        for micros in [
            0_i64,
            1,
            999_999,
            951_782_400_000_000,   // 2000-02-29
            1_764_072_123_456_789, // 2025-11-25
            -1_234_567_890_123,    // before 1970
            4_102_444_799_999_999, // 2099-12-31T23:59:59.999999
        ] {
            let t = epoch + Duration::microseconds(micros);
            assert_eq!(ts_text(micros), records_domain::db::ts(t), "{micros}");
            let days = micros.div_euclid(86_400_000_000);
            assert_eq!(
                date_text(days),
                records_domain::db::date_text(t.date()),
                "{days}"
            );
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn copy_text_escapes_what_would_end_a_field() {
        let mut out = Vec::new();
        Val::Text("a\tb\\c\nd".into()).write_copy(&mut out);
        out.push(b'\t');
        Val::Null.write_copy(&mut out);
        assert_eq!(out, b"a\\tb\\\\c\\nd\t\\N");
    }
}
