//! Times as people in Denmark read them: stored and compared in UTC, shown on the pages in
//! Europe/Copenhagen time with its summer time. The zone's rules are compiled in (jiff's
//! `tz::get!`), so every machine shows the same local time whatever its own zone files say.

use jiff::tz::{self, TimeZone};
use records_domain::db::date_text;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

static DENMARK: TimeZone = tz::get!("Europe/Copenhagen");

/// The same instant at the offset Copenhagen keeps then (+01:00, or +02:00 in summer).
pub fn danish(t: OffsetDateTime) -> OffsetDateTime {
    let offset = jiff::Timestamp::from_second(t.unix_timestamp())
        .ok()
        .map(|instant| DENMARK.to_offset(instant).seconds())
        .and_then(|seconds| UtcOffset::from_whole_seconds(seconds).ok());
    match offset {
        Some(offset) => t.to_offset(offset),
        None => t,
    }
}

/// The Danish calendar day of an instant: a result taken at 23:30 UTC on 30 March is one of
/// 31 March.
pub fn day(t: OffsetDateTime) -> String {
    date_text(danish(t).date())
}

/// Day and minute in Danish time.
pub fn minute(t: OffsetDateTime) -> String {
    let local = danish(t);
    format!(
        "{} {:02}:{:02}",
        date_text(local.date()),
        local.hour(),
        local.minute()
    )
}

/// Day, minute and second in Danish time, for the auditors' tables.
pub fn second(t: OffsetDateTime) -> String {
    let local = danish(t);
    format!("{}:{:02}", minute(t), local.second())
}

/// A stored time (RFC 3339 text, as the audit log keeps it) in Danish time; text that is not
/// a time is shown as it is.
pub fn minute_of(stored: &str) -> String {
    OffsetDateTime::parse(stored, &Rfc3339).map_or_else(|_| stored.to_string(), minute)
}

pub fn second_of(stored: &str) -> String {
    OffsetDateTime::parse(stored, &Rfc3339).map_or_else(|_| stored.to_string(), second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn copenhagen_keeps_winter_and_summer_time() {
        // The night summer time begins (30 March 2025: 02:00 becomes 03:00).
        assert_eq!(minute(datetime!(2025-03-29 23:30 UTC)), "2025-03-30 00:30");
        assert_eq!(minute(datetime!(2025-03-30 01:30 UTC)), "2025-03-30 03:30");
        // The example: late on 30 March UTC is already 31 March in Denmark.
        assert_eq!(day(datetime!(2026-03-30 23:30 UTC)), "2026-03-31");
        // Winter again after the last Sunday of October.
        assert_eq!(minute(datetime!(2025-10-26 01:30 UTC)), "2025-10-26 02:30");
        assert_eq!(minute(datetime!(2025-07-01 12:00 UTC)), "2025-07-01 14:00");
        assert_eq!(second_of("2026-05-30T09:38:07.123Z"), "2026-05-30 11:38:07");
        assert_eq!(minute_of("not a time"), "not a time");
    }
}
