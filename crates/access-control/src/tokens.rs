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
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub user_id: Option<Uuid>,
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
const LIVE_BY_HASH: &str = "SELECT id, name, scopes, user_id FROM api_tokens \
     WHERE token_hash = $1 AND revoked_at IS NULL";

pub(crate) fn statements() -> Vec<Statement> {
    records_domain::statements!("tokens": INSERT, LIVE_BY_HASH)
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: UuidText,
    name: String,
    scopes: String,
    user_id: Option<UuidText>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = AccessError;

    fn try_from(row: TokenRow) -> Result<Self, AccessError> {
        Ok(Self {
            id: row.id.0,
            name: row.name,
            scopes: parse_scopes(&row.scopes)?,
            user_id: row.user_id.map(Uuid::from),
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
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!(
        "pp_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
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

/// The live token with this secret, if any.
pub async fn find(conn: &mut AnyConnection, secret: &str) -> Result<Option<ApiToken>, AccessError> {
    let row: Option<TokenRow> = sqlx::query_as(LIVE_BY_HASH)
        .bind(sha256_hex(secret.trim()))
        .fetch_optional(conn)
        .await?;
    row.map(ApiToken::try_from).transpose()
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
        };
        assert!(token("system/Patient.write system/Observation.write").is_population_register());
        assert!(token("system/Patient.cu").is_population_register());
        assert!(!token("system/*.write").is_population_register());
        assert!(!token("system/Patient.read").is_population_register());
    }
}
