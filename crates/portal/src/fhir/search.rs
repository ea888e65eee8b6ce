//! FHIR search parameters, parsed into typed queries before anything touches the database.
//! Unknown parameters are refused (400) rather than silently ignored, so a client never
//! mistakes an unfiltered result for a filtered one; a client that asks for lenient handling
//! (`Prefer: handling=lenient`) has them dropped, and the self link shows what was used.

use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, Month, OffsetDateTime};
use uuid::Uuid;

pub const DEFAULT_COUNT: i64 = 50;
pub const MAX_COUNT: i64 = 200;
const MAX_OFFSET: i64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search parameter {param}: {problem}")]
pub struct SearchError {
    pub param: String,
    pub problem: String,
}

fn bad(param: &str, problem: impl Into<String>) -> SearchError {
    SearchError {
        param: param.to_string(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub count: i64,
    pub offset: i64,
}

impl Default for Paging {
    fn default() -> Self {
        Self {
            count: DEFAULT_COUNT,
            offset: 0,
        }
    }
}

/// A half-open time range [from, until).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateRange {
    pub from: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// What every search takes besides its own parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shared {
    pub paging: Paging,
    /// `_summary=count`: the total only, no entries.
    pub count_only: bool,
    /// `_total=none`: no total.
    pub no_total: bool,
    /// `_elements`: only these top-level elements of each match.
    pub elements: Vec<String>,
    pub include: Vec<String>,
    pub revinclude: Vec<String>,
    pub last_updated: DateRange,
    /// The parameters the search used, for its self and next links.
    pub used: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservationSearch {
    pub patient: Option<Uuid>,
    /// Any of these (`code=a,b`).
    pub codes: Vec<(Option<String>, String)>,
    pub identifier: Option<String>,
    pub dates: DateRange,
    pub category: Option<String>,
    pub newest_first: bool,
    pub shared: Shared,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientSearch {
    pub identifier: Option<(Option<String>, String)>,
    pub name: Option<String>,
    pub birthdate: Option<Date>,
    pub shared: Shared,
}

/// The other record types: by patient and status (any of a list).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusSearch {
    pub patient: Option<Uuid>,
    pub status: Vec<String>,
    pub identifier: Option<String>,
    pub shared: Shared,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditSearch {
    pub patient: Option<Uuid>,
    pub agent: Option<Uuid>,
    pub dates: DateRange,
    pub shared: Shared,
}

/// Strict handling refuses a parameter the portal does not know; lenient drops it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Handling {
    #[default]
    Strict,
    Lenient,
}

type Pairs<'a> = &'a [(String, String)];
/// The parameters a search takes besides the shared ones, borrowed from the query.
type OwnParams<'a> = Vec<(&'a str, &'a str)>;

/// Parameters every search takes besides its own.
fn common<'a>(
    pairs: Pairs<'a>,
    own: &[&str],
    handling: Handling,
) -> Result<(Shared, OwnParams<'a>), SearchError> {
    let mut shared = Shared::default();
    let mut rest = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            // `_count=0` asks for the total alone, as `_summary=count` does.
            "_count" => match number(k, v, 0, MAX_COUNT)? {
                0 => shared.count_only = true,
                n => shared.paging.count = n,
            },
            "_offset" => shared.paging.offset = number(k, v, 0, MAX_OFFSET)?,
            // fhirpy's count() sends this hint; a total is always counted here.
            "_format" | "_totalMethod" => {}
            "_summary" => match v.as_str() {
                "count" => shared.count_only = true,
                "false" => {}
                _ => return Err(bad(k, "only count and false are supported")),
            },
            "_total" => match v.as_str() {
                "none" => shared.no_total = true,
                "estimate" | "accurate" => {}
                _ => return Err(bad(k, "must be none, estimate or accurate")),
            },
            "_elements" => {
                shared.elements = list(k, v)?
                    .into_iter()
                    .filter(|e| !e.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "_include" | "_revinclude" if shared.include.len() + shared.revinclude.len() >= 10 => {
                return Err(bad(k, "at most 10 _include and _revinclude in all"))
            }
            "_include" => shared.include.push(v.clone()),
            "_revinclude" => shared.revinclude.push(v.clone()),
            "_lastUpdated" => narrow(&mut shared.last_updated, k, v)?,
            key if own.contains(&key) => rest.push((k.as_str(), v.as_str())),
            _ if handling == Handling::Lenient => continue,
            key => return Err(bad(key, "is not supported here (see /fhir/r4/metadata)")),
        }
        shared.used.push((k.clone(), v.clone()));
    }
    Ok((shared, rest))
}

/// The values of an OR list (`a,b`); FHIR escapes a literal comma as `\,`, which no code or
/// status the portal keeps contains.
fn list<'v>(param: &str, v: &'v str) -> Result<Vec<&'v str>, SearchError> {
    let values: Vec<&str> = v.split(',').map(str::trim).collect();
    if values.len() > MAX_LIST {
        return Err(bad(param, format!("at most {MAX_LIST} values")));
    }
    Ok(values)
}

/// The most values one list takes.
const MAX_LIST: usize = 50;

fn number(param: &str, v: &str, min: i64, max: i64) -> Result<i64, SearchError> {
    match v.trim().parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(
            param,
            format!("must be a whole number from {min} to {max}"),
        )),
    }
}

/// `Patient/<id>` or `<id>`, where ids are the portal's UUIDs.
pub fn patient_reference(param: &str, v: &str) -> Result<Uuid, SearchError> {
    let id = v.trim().strip_prefix("Patient/").unwrap_or(v.trim());
    Uuid::parse_str(id).map_err(|_| bad(param, "must be Patient/<id>"))
}

/// `system|code`, `|code` or `code`.
fn token(param: &str, v: &str) -> Result<(Option<String>, String), SearchError> {
    let (system, code) = match v.split_once('|') {
        Some((s, c)) => ((!s.is_empty()).then(|| s.to_string()), c),
        None => (None, v),
    };
    if code.trim().is_empty() || code.len() > 200 {
        return Err(bad(param, "needs a code"));
    }
    Ok((system, code.trim().to_string()))
}

/// A FHIR date of any precision (YYYY, YYYY-MM, YYYY-MM-DD, full dateTime) as the range it covers.
fn date_span(param: &str, v: &str) -> Result<(OffsetDateTime, OffsetDateTime), SearchError> {
    let invalid = || {
        bad(
            param,
            format!("{v:?} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)"),
        )
    };
    if v.len() > 10 {
        let t = OffsetDateTime::parse(v, &Rfc3339).map_err(|_| invalid())?;
        // The last second of year 9999 has no successor: refuse it rather than overflow.
        let end = t.checked_add(Duration::seconds(1)).ok_or_else(invalid)?;
        return Ok((t, end));
    }
    let parts: Vec<&str> = v.split('-').collect();
    let num = |s: &str, len: usize| {
        if s.len() == len {
            s.parse::<i32>().ok()
        } else {
            None
        }
    };
    let year = parts.first().and_then(|y| num(y, 4)).ok_or_else(invalid)?;
    let month = |m: i32| u8::try_from(m).ok().and_then(|m| Month::try_from(m).ok());
    let day = |y: i32, m: Month, d: u8| Date::from_calendar_date(y, m, d).ok();
    let (start, end) = match parts.len() {
        1 => (
            day(year, Month::January, 1),
            day(year + 1, Month::January, 1),
        ),
        2 => {
            let m = parts
                .get(1)
                .and_then(|m| num(m, 2))
                .and_then(month)
                .ok_or_else(invalid)?;
            let next = if m == Month::December {
                day(year + 1, Month::January, 1)
            } else {
                day(year, m.next(), 1)
            };
            (day(year, m, 1), next)
        }
        3 => {
            let m = parts
                .get(1)
                .and_then(|m| num(m, 2))
                .and_then(month)
                .ok_or_else(invalid)?;
            let d = parts
                .get(2)
                .and_then(|d| num(d, 2))
                .and_then(|d| u8::try_from(d).ok())
                .ok_or_else(invalid)?;
            let start = day(year, m, d).ok_or_else(invalid)?;
            (Some(start), start.next_day())
        }
        _ => return Err(invalid()),
    };
    match (start, end) {
        (Some(s), Some(e)) => Ok((s.midnight().assume_utc(), e.midnight().assume_utc())),
        _ => Err(invalid()),
    }
}

/// Narrow `range` by one `date` parameter (`ge2020-01`, `lt2021`, `2020-05-01`, ...).
fn narrow(range: &mut DateRange, param: &str, v: &str) -> Result<(), SearchError> {
    let (prefix, value) = if v.len() > 2 && v.as_bytes()[..2].iter().all(u8::is_ascii_alphabetic) {
        v.split_at(2)
    } else {
        ("eq", v)
    };
    let (start, end) = date_span(param, value)?;
    let later = |a: Option<OffsetDateTime>, b| Some(a.map_or(b, |a: OffsetDateTime| a.max(b)));
    let earlier = |a: Option<OffsetDateTime>, b| Some(a.map_or(b, |a: OffsetDateTime| a.min(b)));
    match prefix {
        "eq" => {
            range.from = later(range.from, start);
            range.until = earlier(range.until, end);
        }
        "ge" => range.from = later(range.from, start),
        "gt" => range.from = later(range.from, end),
        "lt" => range.until = earlier(range.until, start),
        "le" => range.until = earlier(range.until, end),
        other => {
            return Err(bad(
                param,
                format!("prefix {other:?} is not supported (use eq, ge, gt, le or lt)"),
            ))
        }
    }
    Ok(())
}

/// `system|value` as the portal keeps identifiers.
fn identifier(param: &str, v: &str) -> Result<String, SearchError> {
    let (system, value) = token(param, v)?;
    Ok(format!("{}|{value}", system.unwrap_or_default()))
}

impl ObservationSearch {
    pub fn parse(pairs: Pairs, handling: Handling) -> Result<Self, SearchError> {
        let (shared, rest) = common(
            pairs,
            &[
                "patient",
                "subject",
                "code",
                "date",
                "category",
                "identifier",
                "_sort",
            ],
            handling,
        )?;
        let mut s = Self {
            shared,
            newest_first: true,
            ..Self::default()
        };
        for (k, v) in rest {
            match k {
                "patient" | "subject" => s.patient = Some(patient_reference(k, v)?),
                "code" => {
                    for code in list(k, v)? {
                        s.codes.push(token(k, code)?);
                    }
                }
                "identifier" => s.identifier = Some(identifier(k, v)?),
                "date" => narrow(&mut s.dates, k, v)?,
                "category" => s.category = Some(token(k, v)?.1),
                _ => {
                    s.newest_first = match v {
                        "-date" => true,
                        "date" => false,
                        _ => return Err(bad(k, "only date and -date are supported")),
                    }
                }
            }
        }
        Ok(s)
    }
}

impl PatientSearch {
    pub fn parse(pairs: Pairs, handling: Handling) -> Result<Self, SearchError> {
        let (shared, rest) = common(pairs, &["identifier", "name", "birthdate", "_id"], handling)?;
        let mut s = Self {
            shared,
            ..Self::default()
        };
        for (k, v) in rest {
            match k {
                "identifier" => s.identifier = Some(token(k, v)?),
                "_id" => {
                    s.identifier = Some((Some("_id".into()), patient_reference(k, v)?.to_string()))
                }
                "name" if v.trim().chars().count() >= 2 && v.len() <= 100 => {
                    s.name = Some(v.trim().to_string())
                }
                "name" => return Err(bad(k, "give at least 2 characters")),
                _ => {
                    let (start, end) = date_span(k, v)?;
                    if end - start != Duration::days(1) {
                        return Err(bad(k, "give a full date (YYYY-MM-DD)"));
                    }
                    s.birthdate = Some(start.date());
                }
            }
        }
        if s.identifier.is_none() && s.name.is_none() && s.birthdate.is_some() {
            return Err(bad("birthdate", "give a name with the birth date"));
        }
        Ok(s)
    }
}

impl StatusSearch {
    /// `identifier` only where the type keeps one (`with_identifier`).
    pub fn parse(
        pairs: Pairs,
        handling: Handling,
        with_identifier: bool,
    ) -> Result<Self, SearchError> {
        let own: &[&str] = if with_identifier {
            &["patient", "subject", "status", "identifier"]
        } else {
            &["patient", "subject", "status"]
        };
        let (shared, rest) = common(pairs, own, handling)?;
        let mut s = Self {
            shared,
            ..Self::default()
        };
        for (k, v) in rest {
            match k {
                "status" => {
                    for status in list(k, v)? {
                        s.status.push(token(k, status)?.1);
                    }
                }
                "identifier" => s.identifier = Some(identifier(k, v)?),
                _ => s.patient = Some(patient_reference(k, v)?),
            }
        }
        Ok(s)
    }
}

impl AuditSearch {
    pub fn parse(pairs: Pairs, handling: Handling) -> Result<Self, SearchError> {
        let (shared, rest) = common(pairs, &["patient", "entity", "agent", "date"], handling)?;
        let mut s = Self {
            shared,
            ..Self::default()
        };
        for (k, v) in rest {
            match k {
                "patient" | "entity" => s.patient = Some(patient_reference(k, v)?),
                "agent" => {
                    s.agent = Some(
                        Uuid::parse_str(v.trim().rsplit('/').next().unwrap_or(""))
                            .map_err(|_| bad(k, "must be the user's id"))?,
                    )
                }
                _ => narrow(&mut s.dates, k, v)?,
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    fn observation(q: &str) -> Result<ObservationSearch, SearchError> {
        ObservationSearch::parse(&pairs(q), Handling::Strict)
    }

    fn patient(q: &str) -> Result<PatientSearch, SearchError> {
        PatientSearch::parse(&pairs(q), Handling::Strict)
    }

    #[test]
    fn observation_search_with_all_parameters() {
        let s = observation("patient=Patient/00000000-0000-0000-0000-000000000001&code=http://loinc.org|4548-4&date=ge2020-01&date=lt2021&category=laboratory&_sort=date&_count=10&_offset=20").unwrap();
        assert_eq!(s.patient, Some(Uuid::from_u128(1)));
        assert_eq!(
            s.codes,
            vec![(Some("http://loinc.org".into()), "4548-4".into())]
        );
        assert_eq!(s.dates.from, Some(datetime!(2020-01-01 0:00 UTC)));
        assert_eq!(s.dates.until, Some(datetime!(2021-01-01 0:00 UTC)));
        assert_eq!(s.category.as_deref(), Some("laboratory"));
        assert!(!s.newest_first);
        assert_eq!(
            s.shared.paging,
            Paging {
                count: 10,
                offset: 20
            }
        );
    }

    #[test]
    fn date_precision_decides_the_range() {
        let s = observation("date=2020-02-29").unwrap();
        assert_eq!(
            (s.dates.from, s.dates.until),
            (
                Some(datetime!(2020-02-29 0:00 UTC)),
                Some(datetime!(2020-03-01 0:00 UTC))
            )
        );
        let s = observation("date=le2020-12").unwrap();
        assert_eq!(s.dates.until, Some(datetime!(2021-01-01 0:00 UTC)));
        let s = observation("date=gt2020-01-01").unwrap();
        assert_eq!(s.dates.from, Some(datetime!(2020-01-02 0:00 UTC)));
        let s = observation("date=ge2020-01-01T10:00:00%2B02:00").unwrap();
        assert_eq!(s.dates.from, Some(datetime!(2020-01-01 8:00 UTC)));
    }

    #[test]
    fn the_end_of_time_is_refused_not_overflowed() {
        // Found by the fhir_search fuzz target: one second after 9999-12-31T23:59:59Z.
        for query in [
            "date=9999-12-31T23:59:59Z",
            "date=9999-12-31T23:59:59-23:59",
            "date=9999",
            "date=9999-12",
            "date=9999-12-31",
        ] {
            let _ = observation(query);
        }
        assert!(observation("date=9999-12-31T23:59:59Z").is_err());
        assert!(patient("birthdate=9999-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn bad_parameters_are_named() {
        for (q, param) in [
            ("date=2020-13", "date"),
            ("date=sa2020", "date"),
            ("date=20200101", "date"),
            ("_count=100000", "_count"),
            ("_offset=-1", "_offset"),
            ("patient=Patient/abc", "patient"),
            ("colour=blue", "colour"),
            ("_sort=value", "_sort"),
            ("code=", "code"),
        ] {
            assert_eq!(observation(q).unwrap_err().param, param, "{q}");
        }
    }

    #[test]
    fn patient_search_needs_identifier_or_name() {
        assert!(patient("birthdate=1980-01-01").is_err());
        assert!(patient("").is_ok_and(|s| s.identifier.is_none() && s.name.is_none()));
        let s = patient("identifier=urn:oid:1.2.208.176.1.2|0101801234").unwrap();
        assert_eq!(s.identifier.unwrap().1, "0101801234");
        let s = patient("name=Jensen&birthdate=1980-03-14").unwrap();
        assert_eq!(
            s.birthdate.map(|d| d.to_string()),
            Some("1980-03-14".into())
        );
        assert!(patient("name=Jensen&birthdate=1980").is_err());
    }

    #[test]
    fn status_and_audit_searches() {
        let s = StatusSearch::parse(
            &pairs("patient=00000000-0000-0000-0000-000000000002&status=active,stopped"),
            Handling::Strict,
            false,
        )
        .unwrap();
        assert_eq!(
            (s.patient, s.status),
            (
                Some(Uuid::from_u128(2)),
                vec!["active".into(), "stopped".into()]
            )
        );
        let s = AuditSearch::parse(
            &pairs("agent=00000000-0000-0000-0000-000000000003&date=ge2026"),
            Handling::Strict,
        )
        .unwrap();
        assert_eq!(s.agent, Some(Uuid::from_u128(3)));
    }

    #[test]
    fn or_lists_and_shared_parameters() {
        let s = observation("code=2345-7,http://loinc.org|2339-0&identifier=urn:lab|7&_summary=count&_total=none&_elements=code,status&_lastUpdated=ge2026").unwrap();
        assert_eq!(
            s.codes,
            vec![
                (None, "2345-7".into()),
                (Some("http://loinc.org".into()), "2339-0".into())
            ]
        );
        assert_eq!(s.identifier.as_deref(), Some("urn:lab|7"));
        assert!(s.shared.count_only && s.shared.no_total);
        assert_eq!(s.shared.elements, ["code", "status"]);
        assert_eq!(
            s.shared.last_updated.from,
            Some(datetime!(2026-01-01 0:00 UTC))
        );
        assert!(observation("_summary=true").is_err());
    }

    #[test]
    fn lenient_handling_drops_what_strict_refuses() {
        assert_eq!(observation("colour=blue").unwrap_err().param, "colour");
        let s =
            ObservationSearch::parse(&pairs("colour=blue&code=1-8"), Handling::Lenient).unwrap();
        assert_eq!(s.shared.used, vec![("code".to_string(), "1-8".to_string())]);
    }
}
