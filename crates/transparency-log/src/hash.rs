//! The RFC 6962 hashes: a leaf is SHA-256(0x00 || data) and an interior node
//! SHA-256(0x01 || left || right), so that no leaf can pass for a node (second preimages).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::Error;

/// A SHA-256 output: a leaf hash, a node hash or a root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The root of the empty tree, SHA-256 of nothing (RFC 9162 section 2.1.1).
    pub fn empty() -> Self {
        Hash(Sha256::digest([]).into())
    }

    pub fn leaf(data: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update([0x00]);
        hasher.update(data);
        Hash(hasher.finalize().into())
    }

    pub fn node(left: &Hash, right: &Hash) -> Self {
        let mut hasher = Sha256::new();
        hasher.update([0x01]);
        hasher.update(left.0);
        hasher.update(right.0);
        Hash(hasher.finalize().into())
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        <[u8; 32]>::try_from(bytes)
            .map(Hash)
            .map_err(|_| Error::HashLength(bytes.len()))
    }

    pub fn from_base64(text: &str) -> Result<Self, Error> {
        Self::from_slice(&STANDARD.decode(text)?)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// In JSON a hash is standard base64, as in the checkpoint's root line.
impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Hash::from_base64(&text).map_err(serde::de::Error::custom)
    }
}
