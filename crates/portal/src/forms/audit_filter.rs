//! The auditor's filter of the audit log, as typed (checked in `routes::audit`).

use serde::{Deserialize, Serialize};

/// The filter as typed; kept as text so that the form comes back as it was sent.
#[derive(Deserialize, Serialize, Default, Clone, Debug)]
pub struct FilterForm {
    #[serde(default)]
    pub cpr: String,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub clinic: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub outcome: String,
    #[serde(default)]
    pub basis: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub after_at: String,
    #[serde(default)]
    pub after_id: String,
}
