//! A transparency log for the audit trail: one RFC 9162 Merkle tree over every audit event in
//! append order, C2SP signed checkpoints of it, witness cosignatures, and the proofs that let
//! people outside the portal check it. The crate knows no database and no HTTP: the audit
//! writer feeds it leaves and stores what it hands back.
//!
//! Read in this order: [`Hash`](struct@Hash) (leaf and node hashes), [`Frontier`] and [`ProofPlan`]
//! (growing the tree and naming the stored nodes a proof needs), [`verify_inclusion`] and
//! [`verify_consistency`], [`SignedNote`] and [`Checkpoint`] (what gets signed and how),
//! [`verify_download`] (what a patient checks).
//!
//! # What each party can prove
//!
//! - **A patient**, with a download ([`AuditDownload`]) and the log's public key obtained
//!   independently of the download: that each of their listed events is in the log the signed
//!   checkpoint commits to, unchanged, at its position. If the portal later drops or alters
//!   one of those events, every later checkpoint is inconsistent with this one, and the signed
//!   checkpoint is the evidence. A patient *cannot* prove from the download alone that no
//!   event about them is missing from it: a proof shows presence, never absence. Nor can they
//!   rule out that the log showed them a fork unless the checkpoint is cosigned by a witness
//!   they trust.
//! - **An auditor**, with access to the whole log: that the tree rebuilt from the stored
//!   events has exactly the roots of every signed checkpoint, and that successive checkpoints
//!   are consistent ([`verify_consistency`]), so that no event was removed, reordered or
//!   changed after a checkpoint covered it; the first leaf where a rebuilt tree departs from a
//!   checkpoint names the first changed or missing event. The auditor cannot prove that an
//!   event was written at all if the portal never logged it, or that it was logged truthfully.
//! - **A witness**, holding its own copy of the checkpoints it cosigned: that the log only
//!   ever grew (each new checkpoint consistent with the last it saw), and, by its cosignature,
//!   lets others rely on that. A history rewritten by someone with full database rights and
//!   even the signing key shows as a checkpoint inconsistent with the witness's copy. A
//!   witness cannot see event contents and proves nothing about them beyond their fixed place.
//!
//! Storage choice: see [`tree`](Frontier) — the append-only table of perfect-subtree hashes
//! `(level, index) -> hash` is what makes proofs O(log n) point reads.
//!
//! Why hand-written rather than `ct-merkle` (0.3): that crate keeps the whole tree in memory
//! (`MemoryBackedTree`), verifies proofs against leaf values rather than leaf hashes, and
//! builds on `digest` 0.11 while this workspace and `ed25519-dalek` 2 are on `sha2` 0.10. What
//! is needed here — a frontier, proofs from stored nodes, RFC 9162 verification — is two
//! hundred lines, checked against a naive RFC 6962 implementation and the RFC's test data.

mod checkpoint;
mod download;
mod error;
mod hash;
mod note;
mod proof;
mod tree;

pub use checkpoint::Checkpoint;
pub use download::{
    verify_download, AuditDownload, DownloadedEvent, VerifiedDownload, DOWNLOAD_FORMAT,
};
pub use error::Error;
pub use hash::Hash;
pub use note::{KeyType, NoteSignature, SignedNote, SignerKey, VerifierKey};
pub use proof::{verify_consistency, verify_inclusion};
pub use tree::{Frontier, NodeId, ProofPlan};
