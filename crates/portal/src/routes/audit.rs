//! The auditor's workbench: filtered search with keyset paging, the review queue, per-clinician
//! statistics, streamed CSV export and chain verification. Auditors see events, never clinical
//! data; their reads go to the read replica when one is configured, and every auditor action
//! is itself an audit event.

use std::collections::HashMap;
use std::time::Instant;

use access_control::audit::query::{self as audit_query, Cursor, Export, Filter};
use access_control::audit::{self, statistics, verify, AuditEvent, NewEvent, Outcome};
use access_control::{accounts, Basis};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use maud::Markup;
use records_domain::cpr::Cpr;
use records_domain::db::{date_text, parse_ts};
use records_domain::model::PatientId;
use records_domain::store::{clinics, patients};
use serde::Deserialize;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::csrf::CsrfForm;
use crate::auth::{AuditorUser, CurrentUser};
use crate::error::{AppError, AppResult};
use crate::forms::fields::optional_date;
pub use crate::forms::FilterForm;
use crate::problem::Problem;
use crate::views::audit as view;

const PAGE_SIZE: i64 = 50;
const STATS_DAYS: i64 = 30;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(workbench).post(search))
        .route("/audit/export.csv", post(export))
        .route("/audit/reviews", get(reviews))
        .route("/audit/reviews/{review}/close", post(close_review))
        .route("/audit/stats", get(stats))
        .route("/audit/verify", get(verify_log))
}

/// The filter form checked field by field, without the database: a pure function of the
/// text, so that it can be fuzzed (fuzz/fuzz_targets/audit_filter.rs). Whatever was typed,
/// the answer is a filter or a message for the auditor (400), never a panic.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedFilter {
    pub cpr: Option<Cpr>,
    pub actor: Option<String>,
    pub clinic_id: Option<Uuid>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub basis: Option<String>,
    pub from: Option<OffsetDateTime>,
    /// Exclusive: the start of the day after the last day asked for.
    pub until: Option<OffsetDateTime>,
    pub after: Option<Cursor>,
}

impl FilterForm {
    pub fn check(&self) -> AppResult<CheckedFilter> {
        let cpr = match self.cpr.trim() {
            "" => None,
            text => Some(Cpr::parse(text).map_err(|e| AppError::bad_request(e.to_string()))?),
        };
        let clinic_id = match self.clinic.trim() {
            "" => None,
            id => Some(
                Uuid::parse_str(id)
                    .map_err(|_| AppError::bad_request("Choose a clinic from the list."))?,
            ),
        };
        if !self.basis.is_empty() && Basis::parse(&self.basis).is_none() {
            return Err(AppError::bad_request("Choose a basis from the list."));
        }
        let from = optional_date(&self.from, "The first day")?;
        // The last day is included, so the filter ends where the next day begins; there is
        // none after the calendar's last day.
        let until = match optional_date(&self.until, "The last day")? {
            None => None,
            Some(last) => Some(last.next_day().ok_or_else(|| {
                AppError::bad_request(format!(
                    "The last day must be before {}.",
                    date_text(Date::MAX)
                ))
            })?),
        };
        Ok(CheckedFilter {
            cpr,
            actor: text_filter(&self.actor),
            clinic_id,
            action: text_filter(&self.action),
            outcome: text_filter(&self.outcome),
            basis: text_filter(&self.basis),
            from: from.map(|d| d.midnight().assume_utc()),
            until: until.map(|d| d.midnight().assume_utc()),
            after: self.cursor()?,
        })
    }

    /// The position after the last row of the previous page, as the page's hidden fields
    /// carry it; both or neither.
    fn cursor(&self) -> AppResult<Option<Cursor>> {
        match (self.after_at.trim(), self.after_id.trim()) {
            ("", "") => Ok(None),
            (at, id) if parse_ts(at).is_ok() && Uuid::parse_str(id).is_ok() => Ok(Some(Cursor {
                occurred_at: at.to_string(),
                id: id.to_string(),
            })),
            _ => Err(AppError::bad_request(
                "The page position is not valid; start the search again.",
            )),
        }
    }
}

fn text_filter(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// The checked filter with its names looked up: the patient of the CPR number, the user of
/// the user name.
async fn to_filter(
    state: &AppState,
    auditor: &CurrentUser,
    checked: &CheckedFilter,
) -> AppResult<Filter> {
    let mut conn = state.reader_for(auditor).await.pool().acquire().await?;
    let patient_id = match &checked.cpr {
        None => None,
        Some(cpr) => Some(
            patients::by_cpr(&mut conn, cpr)
                .await?
                .ok_or_else(|| AppError::bad_request("No patient has that CPR number."))?
                .id,
        ),
    };
    let actor_id = match &checked.actor {
        None => None,
        Some(name) => Some(
            accounts::by_username(&mut conn, name)
                .await?
                .ok_or_else(|| AppError::bad_request("There is no user with that user name."))?
                .id,
        ),
    };
    Ok(Filter {
        patient_id,
        actor_id,
        clinic_id: checked.clinic_id,
        action: checked.action.clone(),
        outcome: checked.outcome.clone(),
        basis: checked.basis.clone(),
        from: checked.from,
        until: checked.until,
    })
}

pub(crate) async fn record_auditor_action(
    state: &AppState,
    auditor: &CurrentUser,
    action: &str,
    patient: Option<PatientId>,
    reason: String,
) -> AppResult<()> {
    let mut event =
        NewEvent::by(&auditor.actor(), &auditor.ctx, action, Outcome::Success).reason(reason);
    if let Some(p) = patient {
        event = event.about(p);
    }
    state.audit.append(event).await?;
    Ok(())
}

fn describe(filter: &Filter) -> String {
    format!("{filter:?}")
}

async fn workbench(
    State(state): State<AppState>,
    AuditorUser(auditor): AuditorUser,
) -> AppResult<Markup> {
    results(&state, &auditor, FilterForm::default()).await
}

async fn search(
    State(state): State<AppState>,
    AuditorUser(auditor): AuditorUser,
    CsrfForm(form): CsrfForm<FilterForm>,
) -> AppResult<Response> {
    match results(&state, &auditor, form.clone()).await {
        Ok(page) => Ok(page.into_response()),
        Err(AppError::Problem(Problem::Invalid(problem))) => {
            let mut conn = state.reader_for(&auditor).await.pool().acquire().await?;
            let clinics = clinics::all(&mut conn).await?;
            drop(conn);
            let page = view::workbench(
                &auditor,
                &auditor.csrf().await?,
                &form,
                &clinics,
                Err(&problem),
            );
            Ok((axum::http::StatusCode::BAD_REQUEST, page).into_response())
        }
        Err(e) => Err(e),
    }
}

async fn results(state: &AppState, auditor: &CurrentUser, form: FilterForm) -> AppResult<Markup> {
    let checked = form.check()?;
    let filter = to_filter(state, auditor, &checked).await?;
    let started = Instant::now();
    let mut conn = state.reader_for(auditor).await.pool().acquire().await?;
    let (events, next) =
        audit_query::search(&mut conn, &filter, checked.after.as_ref(), PAGE_SIZE).await?;
    let clinics = clinics::all(&mut conn).await?;
    let elapsed = started.elapsed();
    // Auditors read people, not ids: who each event is about, looked up once per page.
    let mut people = HashMap::new();
    for id in events.iter().filter_map(|e| e.patient_id) {
        if let std::collections::hash_map::Entry::Vacant(slot) = people.entry(id) {
            if let Some(patient) = patients::by_id(&mut conn, PatientId(id)).await? {
                slot.insert(patient);
            }
        }
    }
    drop(conn);
    record_auditor_action(
        state,
        auditor,
        "search audit log",
        filter.patient_id,
        describe(&filter),
    )
    .await?;
    Ok(view::workbench(
        auditor,
        &auditor.csrf().await?,
        &form,
        &clinics,
        Ok(view::Results {
            events: &events,
            people: &people,
            next,
            elapsed,
        }),
    ))
}

const CSV_HEADER: [&str; 20] = [
    "occurred_at",
    "chain_key",
    "seq",
    "id",
    "actor_id",
    "actor_name",
    "actor_role",
    "actor_clinic_id",
    "on_behalf_of",
    "patient_id",
    "action",
    "resource_type",
    "resource_id",
    "basis",
    "outcome",
    "reason",
    "client_addr",
    "hash",
    // With these an auditor shows a patient that an event of their chain came from an address.
    "client_addr_key",
    "client_addr_commitment",
];

/// Spreadsheet programs run cells that start with these as formulas.
fn defuse(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

fn csv_line(cells: &[String]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(cells)?;
    writer.into_inner().map_err(|e| e.into_error().into())
}

fn csv_row(e: &AuditEvent) -> Vec<String> {
    let opt = |v: Option<String>| v.unwrap_or_default();
    [
        e.occurred_at.clone(),
        e.chain_key.clone(),
        e.seq.to_string(),
        e.id.to_string(),
        opt(e.actor_id.map(|u| u.to_string())),
        e.actor_name.clone(),
        e.actor_role.clone(),
        opt(e.actor_clinic_id.map(|u| u.to_string())),
        opt(e.on_behalf_of.clone()),
        opt(e.patient_id.map(|u| u.to_string())),
        e.action.clone(),
        e.resource_type.clone(),
        opt(e.resource_id.clone()),
        e.basis.clone(),
        e.outcome.clone(),
        e.reason.clone(),
        e.client_addr.clone(),
        e.hash.clone(),
        opt(e.client_addr_key.clone()),
        opt(e.client_addr_commitment.clone()),
    ]
    .iter()
    .map(|c| defuse(c))
    .collect()
}

/// Every event of the filter as CSV, streamed row by row from the database to the client: a
/// task reads the cursor and hands lines over a small channel, so memory stays flat.
async fn export(
    State(state): State<AppState>,
    AuditorUser(auditor): AuditorUser,
    CsrfForm(form): CsrfForm<FilterForm>,
) -> AppResult<Response> {
    let filter = to_filter(&state, &auditor, &form.check()?).await?;
    record_auditor_action(
        &state,
        &auditor,
        "export audit log",
        filter.patient_id,
        describe(&filter),
    )
    .await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let reader = state.reader_for(&auditor).await.clone();
    tokio::spawn(async move {
        let header: Vec<String> = CSV_HEADER.iter().map(|h| h.to_string()).collect();
        if sender
            .send(csv_line(&header).map_err(std::io::Error::other))
            .await
            .is_err()
        {
            return;
        }
        let mut conn = match reader.pool().acquire().await {
            Ok(conn) => conn,
            Err(e) => {
                let _ = sender.send(Err(std::io::Error::other(e))).await;
                return;
            }
        };
        let export = Export::new(&filter);
        let mut rows = export.stream(&mut conn);
        while let Some(event) = rows.next().await {
            let line = event
                .map_err(std::io::Error::other)
                .and_then(|e| csv_line(&csv_row(&e)).map_err(std::io::Error::other));
            let failed = line.is_err();
            if sender.send(line).await.is_err() || failed {
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit-events.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

async fn reviews(
    State(state): State<AppState>,
    AuditorUser(auditor): AuditorUser,
) -> AppResult<Markup> {
    record_auditor_action(&state, &auditor, "view review queue", None, String::new()).await?;
    let mut conn = state.reader_for(&auditor).await.pool().acquire().await?;
    let open = audit_query::reviews(&mut conn, "open", 200).await?;
    let closed = audit_query::reviews(&mut conn, "closed", 50).await?;
    let mut items = Vec::with_capacity(open.len() + closed.len());
    for review in open.into_iter().chain(closed) {
        let event = audit_query::by_id(&mut conn, review.event_id).await?;
        items.push((review, event));
    }
    drop(conn);
    Ok(view::reviews(&auditor, &auditor.csrf().await?, &items))
}

#[derive(Deserialize)]
struct CloseForm {
    note: String,
}

async fn close_review(
    State(state): State<AppState>,
    AuditorUser(auditor): AuditorUser,
    Path(review): Path<Uuid>,
    CsrfForm(form): CsrfForm<CloseForm>,
) -> AppResult<Response> {
    let note = form.note.trim();
    if note.chars().count() < 5 || note.chars().count() > 2000 {
        return Err(AppError::bad_request(
            "Write a note of 5 to 2000 characters: what was found, and what was done.",
        ));
    }
    let mut tx = state.db.begin_write().await?;
    let found = audit_query::review_by_id(&mut tx, review)
        .await?
        .ok_or_else(AppError::not_found)?;
    if !audit_query::close_review(&mut tx, review, note, &auditor.user.display_name).await? {
        return Err(AppError::conflict(
            "Another auditor closed this review first.",
        ));
    }
    let mut event = NewEvent::by(
        &auditor.actor(),
        &auditor.ctx,
        "close review",
        Outcome::Success,
    )
    .resource("audit_review", Some(review.to_string()))
    .reason(note);
    if let Some(p) = found.patient_id {
        event = event.about(PatientId(p));
    }
    audit::append(&mut tx, event).await?;
    tx.commit().await?;
    state.note_write(&auditor).await?;
    Ok(Redirect::to("/audit/reviews").into_response())
}

async fn stats(
    State(state): State<AppState>,
    AuditorUser(auditor): AuditorUser,
) -> AppResult<Markup> {
    let today = OffsetDateTime::now_utc().date();
    let first = today - Duration::days(STATS_DAYS - 1);
    let mut conn = state.reader_for(&auditor).await.pool().acquire().await?;
    let per_clinician = statistics::clinician_stats(&mut conn, first, today).await?;
    drop(conn);
    record_auditor_action(
        &state,
        &auditor,
        "view access statistics",
        None,
        String::new(),
    )
    .await?;
    Ok(view::stats(
        &auditor,
        &auditor.csrf().await?,
        STATS_DAYS,
        &per_clinician,
    ))
}

async fn verify_log(
    State(state): State<AppState>,
    AuditorUser(auditor): AuditorUser,
) -> AppResult<Markup> {
    let started = Instant::now();
    let mut conn = state.reader_for(&auditor).await.pool().acquire().await?;
    let trust = verify::LogTrust {
        keys: state.config.log.trusted(),
        outside: Vec::new(),
    };
    let report = verify::verify_all(&mut conn, &trust).await?;
    drop(conn);
    let elapsed = started.elapsed();
    let outcome = if report.is_intact() {
        "intact"
    } else {
        "BROKEN"
    };
    record_auditor_action(
        &state,
        &auditor,
        "verify audit log",
        None,
        format!(
            "{} chains, {} events: {outcome}",
            report.chains, report.events
        ),
    )
    .await?;
    Ok(view::verify(
        &auditor,
        &auditor.csrf().await?,
        &report,
        elapsed,
    ))
}
