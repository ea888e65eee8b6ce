//! The Danish national identifier (CPR number). `Cpr::parse` is the only way to obtain one, so a
//! `Cpr` in hand is always ten digits that name a real calendar date.

use std::fmt;
use time::{Date, Month};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CprError {
    #[error("a CPR number has 10 digits, written DDMMYY-SSSS or DDMMYYSSSS")]
    Format,
    #[error("the first six digits of a CPR number must be a real date (DDMMYY)")]
    Date,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cpr(String);

impl Cpr {
    /// Accepts `DDMMYYSSSS` or `DDMMYY-SSSS`, surrounding white space allowed.
    /// The modulus-11 check is deliberately not applied: the CPR office has issued numbers
    /// that fail it since 2007.
    pub fn parse(input: &str) -> Result<Self, CprError> {
        let trimmed = input.trim();
        let digits: String = match trimmed.len() {
            10 => trimmed.to_string(),
            11 if trimmed.as_bytes()[6] == b'-' => format!("{}{}", &trimmed[..6], &trimmed[7..]),
            _ => return Err(CprError::Format),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CprError::Format);
        }
        birth_date_of(&digits)?;
        Ok(Self(digits))
    }

    pub fn birth_date(&self) -> Date {
        // parse() has proven the date; the fallback is unreachable but keeps this total.
        birth_date_of(&self.0).unwrap_or(Date::MIN)
    }

    /// Odd final digit: male; even: female (the CPR office's convention).
    pub fn is_odd(&self) -> bool {
        self.0.as_bytes()[9] % 2 == 1
    }

    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The customary written form, DDMMYY-SSSS.
    pub fn formatted(&self) -> String {
        format!("{}-{}", &self.0[..6], &self.0[6..])
    }

    /// Only the date part and a mask: enough to recognise, not enough to identify.
    pub fn masked(&self) -> String {
        format!("{}-xxxx", &self.0[..6])
    }
}

impl fmt::Debug for Cpr {
    // Debug output reaches logs; a national ID must not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cpr({})", self.masked())
    }
}

fn two_digits(s: &str, at: usize) -> u8 {
    (s.as_bytes()[at] - b'0') * 10 + (s.as_bytes()[at + 1] - b'0')
}

/// The century follows from the seventh digit and the two-digit year, as the CPR office defines.
pub fn century(seventh_digit: u8, year: u8) -> i32 {
    match (seventh_digit, year) {
        (0..=3, _) => 1900,
        (4 | 9, 0..=36) => 2000,
        (4 | 9, _) => 1900,
        (5..=8, 0..=57) => 2000,
        _ => 1800,
    }
}

fn birth_date_of(digits: &str) -> Result<Date, CprError> {
    let day = two_digits(digits, 0);
    let month = two_digits(digits, 2);
    let year = two_digits(digits, 4);
    let seventh = digits.as_bytes()[6] - b'0';
    let full_year = century(seventh, year) + i32::from(year);
    let month = Month::try_from(month).map_err(|_| CprError::Date)?;
    Date::from_calendar_date(full_year, month, day).map_err(|_| CprError::Date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn accepts_with_and_without_dash() {
        assert_eq!(Cpr::parse("010180-1234").unwrap().digits(), "0101801234");
        assert_eq!(
            Cpr::parse(" 0101801234 ").unwrap().formatted(),
            "010180-1234"
        );
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "",
            "123",
            "01018-01234",
            "0101801234x",
            "01018012345",
            "010180_1234",
            "abcdefghij",
            "0101801２34",
        ] {
            assert_eq!(Cpr::parse(bad), Err(CprError::Format), "{bad}");
        }
    }

    #[test]
    fn rejects_impossible_dates() {
        for bad in ["3102801234", "0013801234", "0000801234", "2902011234"] {
            assert_eq!(Cpr::parse(bad), Err(CprError::Date), "{bad}");
        }
        // 2000 was a leap year: a 4 in the seventh digit and year 00 means 2000.
        assert_eq!(
            Cpr::parse("2902004000").unwrap().birth_date(),
            date!(2000 - 02 - 29)
        );
    }

    #[test]
    fn century_follows_the_cpr_office_table() {
        assert_eq!(
            Cpr::parse("0101371234").unwrap().birth_date(),
            date!(1937 - 01 - 01)
        );
        assert_eq!(
            Cpr::parse("0101364234").unwrap().birth_date(),
            date!(2036 - 01 - 01)
        );
        assert_eq!(
            Cpr::parse("0101374234").unwrap().birth_date(),
            date!(1937 - 01 - 01)
        );
        assert_eq!(
            Cpr::parse("0101575234").unwrap().birth_date(),
            date!(2057 - 01 - 01)
        );
        assert_eq!(
            Cpr::parse("0101585234").unwrap().birth_date(),
            date!(1858 - 01 - 01)
        );
        assert_eq!(
            Cpr::parse("0101108234").unwrap().birth_date(),
            date!(2010 - 01 - 01)
        );
        assert_eq!(
            Cpr::parse("0101999234").unwrap().birth_date(),
            date!(1999 - 01 - 01)
        );
        assert_eq!(
            Cpr::parse("0101159234").unwrap().birth_date(),
            date!(2015 - 01 - 01)
        );
    }

    #[test]
    fn debug_never_shows_the_serial() {
        let cpr = Cpr::parse("0101801234").unwrap();
        assert!(!format!("{cpr:?}").contains("1234"));
    }
}
