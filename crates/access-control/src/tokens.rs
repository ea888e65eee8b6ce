//! API tokens for the FHIR interface: SMART-style scopes (`patient/*.read`, `user/Observation.read`,
//! `system/Observation.write`, ...) bound to a portal user (who the reads are decided and audited
//! as) or to a system client (a lab or registry that writes results in).

use base64::Engine;
use rand::RngCore;
use records_domain::db::{Statement, Utc, UuidText};
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::accounts::sha256_hex;
use crate::actor::{Actor, Reach};
use crate::AccessError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    /// The signed-in patient's own record (and records they hold a proxy for).
    Patient,
    /// Whatever the bound user may see under the access policy.
    User,
    /// A system client acting for no person.
    System,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: ScopeContext,
    /// A FHIR resource type, or `*`.
    pub resource: String,
    pub read: bool,
    pub write: bool,
}

impl Scope {
    /// Parses SMART v1 (`.read`, `.write`, `.*`) and v2 (`.rs`, `.cruds`) permissions.
    pub fn parse(text: &str) -> Result<Self, AccessError> {
        let bad = || {
            AccessError::invalid(format!(
                "{text:?} is not a scope like patient/*.read or system/Observation.write"
            ))
        };
        let (context, rest) = text.split_once('/').ok_or_else(bad)?;
        let (resource, permission) = rest.rsplit_once('.').ok_or_else(bad)?;
        let context = match context {
            "patient" => ScopeContext::Patient,
            "user" => ScopeContext::User,
            "system" => ScopeContext::System,
            _ => return Err(bad()),
        };
        let valid_resource = resource == "*"
            || (!resource.is_empty() && resource.chars().all(|c| c.is_ascii_alphabetic()));
        if !valid_resource {
            return Err(bad());
        }
        let (read, write) = match permission {
            "read" => (true, false),
            "write" => (false, true),
            "*" => (true, true),
            v2 if !v2.is_empty() && v2.chars().all(|c| "cruds".contains(c)) => (
                v2.contains('r') || v2.contains('s'),
                v2.contains('c') || v2.contains('u'),
            ),
            _ => return Err(bad()),
        };
        Ok(Self {
            context,
            resource: resource.to_string(),
            read,
            write,
        })
    }

    fn covers(&self, resource: &str) -> bool {
        self.resource == "*" || self.resource == resource
    }

    /// The scope as SMART v1 writes it.
    fn text(&self) -> String {
        let context = match self.context {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        };
        let permission = match (self.read, self.write) {
            (true, true) => "*",
            (true, false) => "read",
            _ => "write",
        };
        format!("{context}/{}.{permission}", self.resource)
    }

    /// Everything `narrower` allows, this scope allows too.
    fn includes(&self, narrower: &Scope) -> bool {
        self.context == narrower.context
            && self.covers(&narrower.resource)
            && (self.read || !narrower.read)
            && (self.write || !narrower.write)
    }
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub user_id: Option<Uuid>,
    /// Set for the short-lived access tokens `issue_access` makes; `None` for the tokens an
    /// operator creates, which live until revoked.
    pub expires_at: Option<time::OffsetDateTime>,
}

impl ApiToken {
    /// The widest context in which the token may read or write `resource`; `None` if no scope
    /// covers it. `patient/` is the narrowest: the token's own patient only.
    pub fn context_for(&self, resource: &str, write: bool) -> Option<ScopeContext> {
        let granting = |s: &&Scope| s.covers(resource) && if write { s.write } else { s.read };
        let contexts: Vec<ScopeContext> = self
            .scopes
            .iter()
            .filter(granting)
            .map(|s| s.context)
            .collect();
        [
            ScopeContext::System,
            ScopeContext::User,
            ScopeContext::Patient,
        ]
        .into_iter()
        .find(|c| contexts.contains(c))
    }

    /// A system client trusted to register patients and keep their demographics: it must be
    /// given `system/Patient.write` by name; a wildcard scope does not make a lab a register.
    pub fn is_population_register(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| s.context == ScopeContext::System && s.resource == "Patient" && s.write)
    }

    /// Who the token acts as for this resource: its user, narrowed to their own record when
    /// only a `patient/` scope covers it; or, for a system client, the client itself.
    pub fn actor(&self, user: Option<Actor>, resource: &str, write: bool) -> Option<Actor> {
        let context = self.context_for(resource, write)?;
        match (user, context) {
            (None, ScopeContext::System) => {
                let reach = if self.is_population_register() {
                    Reach::PopulationRegister
                } else {
                    Reach::WholeRole
                };
                Some(Actor::system(
                    self.id,
                    format!("system client {}", self.name),
                    reach,
                ))
            }
            (Some(user), ScopeContext::Patient) => Some(Actor {
                reach: Reach::OwnRecordOnly,
                ..user
            }),
            (Some(user), ScopeContext::User) => Some(user),
            _ => None,
        }
    }
}

pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, AccessError> {
    let scopes = text
        .split_whitespace()
        .map(Scope::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if scopes.is_empty() {
        return Err(AccessError::invalid("give at least one scope"));
    }
    Ok(scopes)
}

const INSERT: &str = "INSERT INTO api_tokens (id, name, token_hash, scopes, user_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";
const LIVE_BY_HASH: &str = "SELECT id, name, scopes, user_id, expires_at FROM api_tokens \
     WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)";
const INSERT_ACCESS: &str = "INSERT INTO api_tokens \
     (id, name, token_hash, scopes, user_id, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, NULL, $5, $6)";
const PRUNE_EXPIRED: &str = "DELETE FROM api_tokens WHERE expires_at < $1";

pub(crate) fn statements() -> Vec<Statement> {
    records_domain::statements!("tokens": INSERT, LIVE_BY_HASH, INSERT_ACCESS, PRUNE_EXPIRED)
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: UuidText,
    name: String,
    scopes: String,
    user_id: Option<UuidText>,
    expires_at: Option<Utc>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = AccessError;

    fn try_from(row: TokenRow) -> Result<Self, AccessError> {
        Ok(Self {
            id: row.id.0,
            name: row.name,
            scopes: parse_scopes(&row.scopes)?,
            user_id: row.user_id.map(Uuid::from),
            expires_at: row.expires_at.map(|t| t.0),
        })
    }
}

/// Create a token; the secret is returned once and only its hash is kept.
pub async fn create(
    conn: &mut AnyConnection,
    name: &str,
    scopes: &str,
    user_id: Option<Uuid>,
) -> Result<String, AccessError> {
    let parsed = parse_scopes(scopes)?;
    let system_scopes = parsed.iter().any(|s| s.context == ScopeContext::System);
    if system_scopes == user_id.is_some() {
        return Err(AccessError::invalid(
            "system/ scopes are for tokens without a user; patient/ and user/ scopes need --user",
        ));
    }
    let secret = new_secret();
    sqlx::query(INSERT)
        .bind(UuidText(Uuid::now_v7()))
        .bind(name)
        .bind(sha256_hex(&secret))
        .bind(scopes.split_whitespace().collect::<Vec<_>>().join(" "))
        .bind(user_id.map(UuidText))
        .bind(Utc::now())
        .execute(conn)
        .await?;
    Ok(secret)
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "pp_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The live token with this secret, if any.
pub async fn find(conn: &mut AnyConnection, secret: &str) -> Result<Option<ApiToken>, AccessError> {
    let row: Option<TokenRow> = sqlx::query_as(LIVE_BY_HASH)
        .bind(sha256_hex(secret.trim()))
        .bind(Utc::now())
        .fetch_optional(conn)
        .await?;
    row.map(ApiToken::try_from).transpose()
}

/// An access token made by the SMART client-credentials grant.
#[derive(Debug)]
pub struct AccessGrant {
    pub secret: String,
    /// What the token may do, space-separated: the scopes asked for, or all of the client's.
    pub scopes: String,
}

/// Why a client-credentials request is refused, in the terms of RFC 6749 section 5.2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantRefusal {
    /// The token belongs to a person; client credentials are for systems acting for nobody.
    #[error("only a system client's own token may ask for access tokens")]
    NotASystemClient,
    #[error("{0}")]
    InvalidScope(String),
}

/// A short-lived access token for a system client, holding no scope its own token lacks.
/// Expired access tokens are deleted as new ones are made, so the table holds at most what
/// clients asked for within one lifetime.
pub async fn issue_access(
    conn: &mut AnyConnection,
    client: &ApiToken,
    requested: Option<&str>,
    lifetime: time::Duration,
) -> Result<Result<AccessGrant, GrantRefusal>, AccessError> {
    if client.user_id.is_some() || client.expires_at.is_some() {
        return Ok(Err(GrantRefusal::NotASystemClient));
    }
    let scopes = match requested.map(str::trim).filter(|r| !r.is_empty()) {
        None => client.scopes.iter().map(Scope::text).collect::<Vec<_>>(),
        Some(requested) => match narrower_scopes(client, requested) {
            Ok(scopes) => scopes,
            Err(refusal) => return Ok(Err(refusal)),
        },
    }
    .join(" ");
    let now = Utc::now();
    sqlx::query(PRUNE_EXPIRED)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let secret = new_secret();
    sqlx::query(INSERT_ACCESS)
        .bind(UuidText(Uuid::now_v7()))
        .bind(&client.name)
        .bind(sha256_hex(&secret))
        .bind(&scopes)
        .bind(now)
        .bind(Utc(now.0 + lifetime))
        .execute(conn)
        .await?;
    Ok(Ok(AccessGrant { secret, scopes }))
}

fn narrower_scopes(client: &ApiToken, requested: &str) -> Result<Vec<String>, GrantRefusal> {
    requested
        .split_whitespace()
        .map(|text| {
            let scope =
                Scope::parse(text).map_err(|e| GrantRefusal::InvalidScope(e.to_string()))?;
            if client.scopes.iter().any(|held| held.includes(&scope)) {
                Ok(text.to_string())
            } else {
                Err(GrantRefusal::InvalidScope(format!(
                    "{text} is more than this client holds"
                )))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_in_smart_v1_and_v2() {
        let s = Scope::parse("patient/*.read").unwrap();
        assert_eq!(
            (s.context, s.resource.as_str(), s.read, s.write),
            (ScopeContext::Patient, "*", true, false)
        );
        let s = Scope::parse("system/Observation.write").unwrap();
        assert!(s.write && !s.read);
        let s = Scope::parse("user/Observation.rs").unwrap();
        assert!(s.read && !s.write);
        let s = Scope::parse("system/*.cruds").unwrap();
        assert!(s.read && s.write);
        for bad in [
            "",
            "patient",
            "patient/*",
            "admin/*.read",
            "patient/Obs-1.read",
            "patient/*.fly",
            "user/.read",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_scopes_cover_resources() {
        let token = ApiToken {
            id: Uuid::nil(),
            name: "x".into(),
            scopes: parse_scopes("user/Observation.read system/CarePlan.write").unwrap(),
            user_id: None,
            expires_at: None,
        };
        assert_eq!(
            token.context_for("Observation", false),
            Some(ScopeContext::User)
        );
        assert_eq!(token.context_for("Patient", false), None);
        assert_eq!(
            token.context_for("CarePlan", true),
            Some(ScopeContext::System)
        );
        assert_eq!(token.context_for("Observation", true), None);
        assert!(!token.is_population_register());
    }

    #[test]
    fn only_a_named_patient_write_scope_makes_a_population_register() {
        let token = |scopes: &str| ApiToken {
            id: Uuid::nil(),
            name: "x".into(),
            scopes: parse_scopes(scopes).unwrap(),
            user_id: None,
            expires_at: None,
        };
        assert!(token("system/Patient.write system/Observation.write").is_population_register());
        assert!(token("system/Patient.cu").is_population_register());
        assert!(!token("system/*.write").is_population_register());
        assert!(!token("system/Patient.read").is_population_register());
    }
}
