//! How values cross the `Any` driver. sqlx's `Any` knows only text, integers, floats and
//! blobs, so every domain type here encodes to one of those, in exactly the format the
//! migrations store: UUIDs as text, times as fixed-width UTC text, dates as `YYYY-MM-DD`, the
//! closed sets of values (statuses, roles, ...) as their text, flags as integers. Binding the
//! type itself (`.bind(patient_id)`, `.bind(Utc(now))`) keeps that format in this one file, and
//! a value that cannot be stored fails the query instead of writing an empty string.

use std::fmt;

use sqlx::any::AnyValueRef;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Any, Database, Decode, Encode, Type};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::model::PatientId;

/// A type stored as one text column.
pub trait TextColumn: Sized {
    /// The stored text; an error for a value the column cannot hold.
    fn to_column(&self) -> Result<String, BoxDynError>;
    fn from_column(text: &str) -> Result<Self, BoxDynError>;
}

/// Gives a `TextColumn` sqlx's `Type`, `Encode` and `Decode` for `Any`, forwarding to
/// `String`'s. A macro because the orphan rule forbids a blanket impl of sqlx's traits.
#[macro_export]
macro_rules! text_column {
    ($ty:ty) => {
        impl ::sqlx::Type<::sqlx::Any> for $ty {
            fn type_info() -> ::sqlx::any::AnyTypeInfo {
                <String as ::sqlx::Type<::sqlx::Any>>::type_info()
            }
        }

        impl<'q> ::sqlx::Encode<'q, ::sqlx::Any> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut <::sqlx::Any as ::sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                let text = $crate::db::TextColumn::to_column(self)?;
                <String as ::sqlx::Encode<'q, ::sqlx::Any>>::encode(text, buf)
            }
        }

        impl<'r> ::sqlx::Decode<'r, ::sqlx::Any> for $ty {
            fn decode(
                value: ::sqlx::any::AnyValueRef<'r>,
            ) -> Result<Self, ::sqlx::error::BoxDynError> {
                let text = <String as ::sqlx::Decode<'r, ::sqlx::Any>>::decode(value)?;
                $crate::db::TextColumn::from_column(&text)
            }
        }
    };
}

/// A UUID key (the other ids of the model are plain `Uuid`s; `PatientId` encodes itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UuidText(pub Uuid);

impl TextColumn for UuidText {
    fn to_column(&self) -> Result<String, BoxDynError> {
        Ok(self.0.to_string())
    }
    fn from_column(text: &str) -> Result<Self, BoxDynError> {
        Ok(Self(Uuid::parse_str(text)?))
    }
}
text_column!(UuidText);

impl From<UuidText> for Uuid {
    fn from(id: UuidText) -> Self {
        id.0
    }
}

impl TextColumn for PatientId {
    fn to_column(&self) -> Result<String, BoxDynError> {
        Ok(self.0.to_string())
    }
    fn from_column(text: &str) -> Result<Self, BoxDynError> {
        Ok(Self(Uuid::parse_str(text)?))
    }
}
text_column!(PatientId);

/// A moment, stored as fixed-width UTC text (`2024-03-01T08:00:00.000000Z`), so that comparing
/// the text compares the times. Years 0 to 9999 fit the width; others fail the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Utc(pub OffsetDateTime);

impl Utc {
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    /// The moment a UTC day begins: how periods given in days (blocks, proxies, care
    /// relationships) are stored.
    pub fn start_of(day: Date) -> Self {
        Self(day.midnight().assume_utc())
    }
}

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0.to_offset(UtcOffset::UTC);
        write!(
            f,
            "{}T{:02}:{:02}:{:02}.{:06}Z",
            IsoDate(t.date()),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }
}

impl TextColumn for Utc {
    fn to_column(&self) -> Result<String, BoxDynError> {
        storable_year(self.0.to_offset(UtcOffset::UTC).year())?;
        Ok(self.to_string())
    }
    fn from_column(text: &str) -> Result<Self, BoxDynError> {
        Ok(Self(OffsetDateTime::parse(text, &Rfc3339)?))
    }
}
text_column!(Utc);

impl From<Utc> for OffsetDateTime {
    fn from(t: Utc) -> Self {
        t.0
    }
}

/// A calendar day, stored as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IsoDate(pub Date);

impl fmt::Display for IsoDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}",
            d.year(),
            u8::from(d.month()),
            d.day()
        )
    }
}

impl TextColumn for IsoDate {
    fn to_column(&self) -> Result<String, BoxDynError> {
        storable_year(self.0.year())?;
        Ok(self.to_string())
    }
    fn from_column(text: &str) -> Result<Self, BoxDynError> {
        Ok(Self(Date::parse(
            text,
            format_description!("[year]-[month]-[day]"),
        )?))
    }
}
text_column!(IsoDate);

impl From<IsoDate> for Date {
    fn from(d: IsoDate) -> Self {
        d.0
    }
}

/// Text order is time order only while every year has four digits.
fn storable_year(year: i32) -> Result<(), BoxDynError> {
    if (0..=9999).contains(&year) {
        Ok(())
    } else {
        Err(format!("the year {year} cannot be stored").into())
    }
}

/// A yes/no column, stored as the integer 0 or 1 (PostgreSQL would refuse a boolean parameter
/// for an integer column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl Type<Any> for Flag {
    fn type_info() -> <Any as Database>::TypeInfo {
        <i64 as Type<Any>>::type_info()
    }
}

impl<'q> Encode<'q, Any> for Flag {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<'q, Any>>::encode(i64::from(self.0), buf)
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(<i64 as Decode<'r, Any>>::decode(value)? != 0))
    }
}

impl From<Flag> for bool {
    fn from(flag: Flag) -> Self {
        flag.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn times_are_fixed_width_utc_and_sort_as_text() {
        let a = datetime!(2024-03-01 09:05:00.000123 UTC);
        let b = datetime!(2024-03-01 10:00:00 +02:00);
        assert_eq!(Utc(b).to_column().unwrap(), "2024-03-01T08:00:00.000000Z");
        assert_eq!(Utc::from_column(&Utc(a).to_string()).unwrap(), Utc(a));
        assert!(Utc(b).to_string() < Utc(a).to_string());
        assert_eq!(
            Utc(datetime!(0999-01-02 03:04:05 UTC)).to_string(),
            "0999-01-02T03:04:05.000000Z"
        );
    }

    #[test]
    fn a_year_outside_four_digits_is_refused_not_stored_empty() {
        assert!(Utc(datetime!(-0001-01-01 00:00 UTC)).to_column().is_err());
        assert!(IsoDate(date!(-0001 - 01 - 01)).to_column().is_err());
    }

    #[test]
    fn dates_round_trip() {
        let d = date!(2012 - 02 - 29);
        assert_eq!(IsoDate(d).to_column().unwrap(), "2012-02-29");
        assert_eq!(IsoDate::from_column("2012-02-29").unwrap(), IsoDate(d));
        assert!(IsoDate::from_column("2012-02-30").is_err());
    }
}
