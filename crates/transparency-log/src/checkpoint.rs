//! The C2SP checkpoint (c2sp.org/tlog-checkpoint): the note text a log signs to commit to a
//! tree size and root. Lines: origin, decimal size, base64 root, then optional extension lines.

use crate::{Error, Hash, SignedNote, SignerKey, VerifierKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extra lines after the root; signed, but no proof speaks about them.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        let body = text.strip_suffix('\n').ok_or(Error::MalformedCheckpoint(
            "the text does not end with a newline",
        ))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(Error::MalformedCheckpoint("fewer than three lines"));
        };
        if origin.is_empty() {
            return Err(Error::MalformedCheckpoint("empty origin"));
        }
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(Error::MalformedCheckpoint("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size: parse_size(size)?,
            root: Hash::from_base64(root)?,
            extensions,
        })
    }

    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, self.root);
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The log's signed checkpoint; the key's name must be the origin, so that a key cannot
    /// vouch for another log.
    pub fn sign(&self, key: &SignerKey) -> Result<SignedNote, Error> {
        if key.name() != self.origin {
            return Err(Error::OriginMismatch {
                origin: self.origin.clone(),
                key: key.name().to_owned(),
            });
        }
        let mut note = SignedNote::new(self.to_text())?;
        note.sign(key)?;
        Ok(note)
    }

    /// Reads a signed checkpoint and checks the log's signature on it.
    pub fn open(note: &SignedNote, log_key: &VerifierKey) -> Result<Self, Error> {
        let checkpoint = Checkpoint::parse(note.text())?;
        if checkpoint.origin != log_key.name() {
            return Err(Error::OriginMismatch {
                origin: checkpoint.origin,
                key: log_key.name().to_owned(),
            });
        }
        note.verify(log_key)?;
        Ok(checkpoint)
    }
}

/// Decimal without leading zeros, as the format demands: one size has one spelling.
fn parse_size(text: &str) -> Result<u64, Error> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(Error::MalformedCheckpoint(
            "the size is not a plain decimal",
        ));
    }
    text.parse()
        .map_err(|_| Error::MalformedCheckpoint("the size does not fit 64 bits"))
}
