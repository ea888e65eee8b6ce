//! The patient's download: their audit events, an inclusion proof for each, the signed
//! checkpoint the proofs lead to and the keys to check it with. `tools/verify_audit_download.py`
//! checks the same JSON without this crate; the two must agree.
//!
//! ```json
//! {
//!   "format": "audit-proof-download/v1",
//!   "log_key": "portal.example/audit+1a2b3c4d+AQ...",
//!   "witness_keys": ["authority.example/witness+5e6f7a8b+BA..."],
//!   "checkpoint": "portal.example/audit\n23\nS417...=\n\n— portal.example/audit I6C0...=\n— authority.example/witness ...\n",
//!   "events": [
//!     { "leaf_index": 4, "entry": "<base64 of the event's canonical bytes>",
//!       "inclusion_proof": ["<base64 hash>", "..."] }
//!   ]
//! }
//! ```
//!
//! The check, step by step (all base64 is standard with padding, in its one canonical form):
//! 1. `format` is exactly `audit-proof-download/v1`; no other fields.
//! 2. `log_key` parses as `name+id+base64(0x01 || 32-byte Ed25519 key)` with id the hex of
//!    SHA-256(name || 0x0A || 0x01 || key)[:4]; if the patient has the published key, it is that.
//! 3. `checkpoint` splits at its last blank line into text and signature lines
//!    `— <name> <base64(4-byte key id || signature)>`. The text is three lines (origin, size in
//!    decimal without leading zeros, base64 of the 32-byte root) and optional extension lines;
//!    the origin is the log key's name; the log's Ed25519 signature over the text verifies.
//! 4. Each of `witness_keys` (type 0x04, key id over 0x04) has a line whose bytes after the key
//!    id are an 8-byte big-endian timestamp and an Ed25519 signature over
//!    `"cosignature/v1\ntime <timestamp>\n" || text`.
//! 5. For each event: leaf = SHA-256(0x00 || entry bytes), and the RFC 9162 section 2.1.3.2
//!    algorithm with nodes SHA-256(0x01 || left || right) takes leaf, `leaf_index`, the
//!    checkpoint's size and `inclusion_proof` to exactly the checkpoint's root.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{verify_inclusion, Checkpoint, Error, Hash, KeyType, SignedNote, VerifierKey};

/// The value of [`AuditDownload::format`]; a verifier refuses any other.
pub const DOWNLOAD_FORMAT: &str = "audit-proof-download/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditDownload {
    pub format: String,
    /// The log's verifier key (type 0x01); its name is the checkpoint's origin. A patient
    /// should compare it with the key the portal publishes elsewhere.
    pub log_key: String,
    /// Verifier keys (type 0x04) of the witnesses whose cosignatures the checkpoint carries.
    #[serde(default)]
    pub witness_keys: Vec<String>,
    /// The signed checkpoint note, signature lines included.
    pub checkpoint: String,
    pub events: Vec<DownloadedEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadedEvent {
    /// The event's position in the log, from 0.
    pub leaf_index: u64,
    /// Base64 of the event's canonical bytes, the leaf data of the tree.
    pub entry: String,
    /// The RFC 9162 inclusion path from the leaf up, each hash in base64.
    pub inclusion_proof: Vec<Hash>,
}

/// What a download proved: these events are in the log the checkpoint commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDownload {
    pub checkpoint: Checkpoint,
    pub log_key: VerifierKey,
    /// Each witness by name, with the time (seconds since the epoch) it cosigned.
    pub witnesses: Vec<(String, u64)>,
    pub events: usize,
}

fn key_of_type(text: &str, key_type: KeyType) -> Result<VerifierKey, Error> {
    let key = VerifierKey::parse(text)?;
    if key.key_type() != key_type {
        return Err(Error::MalformedKey("wrong signature type for its role"));
    }
    Ok(key)
}

/// Parses and checks a download: the log's signature on the checkpoint, every listed
/// witness's cosignature, and every event's inclusion in the checkpoint's tree. With
/// `published_log_key`, the download's own key must be that one.
pub fn verify_download(
    json: &str,
    published_log_key: Option<&VerifierKey>,
) -> Result<VerifiedDownload, Error> {
    let download: AuditDownload =
        serde_json::from_str(json).map_err(|e| Error::MalformedDownload(e.to_string()))?;
    if download.format != DOWNLOAD_FORMAT {
        return Err(Error::MalformedDownload(format!(
            "format {:?}, expected {DOWNLOAD_FORMAT:?}",
            download.format
        )));
    }
    let log_key = key_of_type(&download.log_key, KeyType::Ed25519)?;
    if published_log_key.is_some_and(|published| *published != log_key) {
        return Err(Error::UnpublishedKey);
    }
    let note = SignedNote::parse(&download.checkpoint)?;
    let checkpoint = Checkpoint::open(&note, &log_key)?;
    let witnesses = download
        .witness_keys
        .iter()
        .map(|text| {
            let key = key_of_type(text, KeyType::CosignatureV1)?;
            let time = note
                .verify(&key)?
                .ok_or(Error::MalformedKey("a witness key cosigns"))?;
            Ok((key.name().to_owned(), time))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    for (position, event) in download.events.iter().enumerate() {
        verify_event(event, &checkpoint).map_err(|source| Error::Event {
            position,
            leaf_index: event.leaf_index,
            source: Box::new(source),
        })?;
    }
    Ok(VerifiedDownload {
        checkpoint,
        log_key,
        witnesses,
        events: download.events.len(),
    })
}

fn verify_event(event: &DownloadedEvent, checkpoint: &Checkpoint) -> Result<(), Error> {
    let entry = STANDARD.decode(&event.entry)?;
    verify_inclusion(
        &Hash::leaf(&entry),
        event.leaf_index,
        checkpoint.size,
        &event.inclusion_proof,
        &checkpoint.root,
    )
}
