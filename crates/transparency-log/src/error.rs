//! The one error type of the crate: every way a proof, a note, a key or a download can be
//! malformed or fail to verify, so that callers match on the cause instead of on strings.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {old} cannot be older than tree size {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("the proof has {0} hashes, which does not fit the tree sizes")]
    ProofLength(usize),
    #[error("the proof does not lead to the expected root hash")]
    RootMismatch,
    #[error("the hash store lacks the node at level {level}, index {index}")]
    MissingNode { level: u8, index: u64 },
    #[error("a frontier of tree size {size} holds {count} hashes")]
    FrontierShape { size: u64, count: usize },
    #[error("a hash is {0} bytes, not 32")]
    HashLength(usize),
    #[error("invalid base64: {0}")]
    Base64(String),
    #[error("malformed signed note: {0}")]
    MalformedNote(&'static str),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("key name {0:?} is empty or holds a space or a '+'")]
    KeyName(String),
    #[error("the signature of {name} does not verify")]
    BadSignature { name: String },
    #[error("the note carries no signature by {name}")]
    Unsigned { name: String },
    #[error("the checkpoint's origin {origin:?} is not the log key's name {key:?}")]
    OriginMismatch { origin: String, key: String },
    #[error("the download's log key is not the published one")]
    UnpublishedKey,
    #[error("malformed download: {0}")]
    MalformedDownload(String),
    #[error("event {position} (leaf {leaf_index}): {source}")]
    Event {
        position: usize,
        leaf_index: u64,
        #[source]
        source: Box<Error>,
    },
}

impl From<base64::DecodeError> for Error {
    fn from(err: base64::DecodeError) -> Self {
        Error::Base64(err.to_string())
    }
}
