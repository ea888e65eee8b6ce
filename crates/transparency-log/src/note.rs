//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, in the text formats Go's
//! `golang.org/x/mod/sumdb/note` reads and writes, and the timestamped witness cosignature of
//! c2sp.org/tlog-cosignature (cosignature/v1).
//!
//! A note is text ending in a newline, a blank line, then lines `— <name> <base64(key id ||
//! signature)>`. The key id is the first four bytes of SHA-256(name || "\n" || type || public
//! key), so a verifier picks its signature out of many without trying each.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::Error;

const SIGNATURE_PREFIX: &str = "\u{2014} ";
const MAX_SIGNATURES: usize = 100;
const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

/// What a key signs: a note itself (the log's checkpoint) or a witness's cosignature of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// Signature type 0x01: plain Ed25519 over the note text.
    Ed25519,
    /// Signature type 0x04: Ed25519 over "cosignature/v1\ntime T\n" and the note text.
    CosignatureV1,
}

impl KeyType {
    fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => 0x01,
            KeyType::CosignatureV1 => 0x04,
        }
    }

    fn from_byte(byte: u8) -> Result<Self, Error> {
        match byte {
            0x01 => Ok(KeyType::Ed25519),
            0x04 => Ok(KeyType::CosignatureV1),
            _ => Err(Error::MalformedKey("unsupported signature type")),
        }
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(Error::KeyName(name.to_owned()));
    }
    Ok(())
}

fn key_id(name: &str, key_type: KeyType, public: &VerifyingKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([key_type.byte()]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Splits "name+hex id+base64(type || key)"; the base64 may itself hold '+'.
fn split_key_text(text: &str) -> Result<(&str, u32, KeyType, [u8; 32]), Error> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::MalformedKey("expected name+id+key"));
    };
    check_name(name)?;
    if id.len() != 8 {
        return Err(Error::MalformedKey("the key id is not 8 hex digits"));
    }
    let id =
        u32::from_str_radix(id, 16).map_err(|_| Error::MalformedKey("the key id is not hex"))?;
    let material = STANDARD.decode(material)?;
    let Some((&type_byte, key)) = material.split_first() else {
        return Err(Error::MalformedKey("no key material"));
    };
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| Error::MalformedKey("an Ed25519 key is 32 bytes"))?;
    Ok((name, id, KeyType::from_byte(type_byte)?, key))
}

fn key_text(name: &str, id: u32, key_type: KeyType, key: &[u8; 32]) -> String {
    let mut material = vec![key_type.byte()];
    material.extend_from_slice(key);
    format!("{name}+{id:08x}+{}", STANDARD.encode(material))
}

/// A public key with its name, as published: `<name>+<hex key id>+<base64(type || key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key_type: KeyType,
    key: VerifyingKey,
}

impl VerifierKey {
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (name, id, key_type, key) = split_key_text(text.trim_end())?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| Error::MalformedKey("not an Ed25519 public key"))?;
        if key_id(name, key_type, &key) != id {
            return Err(Error::MalformedKey(
                "the key id does not match name and key",
            ));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            id,
            key_type,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&key_text(
            &self.name,
            self.id,
            self.key_type,
            self.key.as_bytes(),
        ))
    }
}

/// A private key with its name, in Go's text form `PRIVATE+KEY+<name>+<hex id>+<base64(type ||
/// seed)>`, so that keys move between this portal and the Go tools unchanged.
pub struct SignerKey {
    name: String,
    key_type: KeyType,
    key: SigningKey,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerKey")
            .field("name", &self.name)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

impl SignerKey {
    pub fn generate(name: &str, key_type: KeyType) -> Result<Self, Error> {
        check_name(name)?;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Ok(SignerKey {
            name: name.to_owned(),
            key_type,
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(Error::MalformedKey("a signer key starts with PRIVATE+KEY+"))?;
        let (name, id, key_type, seed) = split_key_text(rest)?;
        let key = SigningKey::from_bytes(&seed);
        if key_id(name, key_type, &key.verifying_key()) != id {
            return Err(Error::MalformedKey(
                "the key id does not match name and key",
            ));
        }
        Ok(SignerKey {
            name: name.to_owned(),
            key_type,
            key,
        })
    }

    /// The text form, a secret: write it only to the key file.
    pub fn to_secret_text(&self) -> String {
        format!(
            "PRIVATE+KEY+{}",
            key_text(&self.name, self.id(), self.key_type, self.key.as_bytes())
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn id(&self) -> u32 {
        key_id(&self.name, self.key_type, &self.key.verifying_key())
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id(),
            key_type: self.key_type,
            key: self.key.verifying_key(),
        }
    }
}

/// One signature line: the signer's name, the key id and the signature bytes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    pub signature: Vec<u8>,
}

impl NoteSignature {
    fn parse(line: &str) -> Result<Self, Error> {
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or(Error::MalformedNote(
                "a signature line starts with an em dash",
            ))?;
        let (name, encoded) = rest.split_once(' ').ok_or(Error::MalformedNote(
            "a signature line is name, space, signature",
        ))?;
        check_name(name)?;
        let bytes = STANDARD.decode(encoded)?;
        if bytes.len() < 5 {
            return Err(Error::MalformedNote(
                "a signature is a key id and at least a byte",
            ));
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            signature: bytes[4..].to_vec(),
        })
    }

    fn line(&self) -> String {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(bytes)
        )
    }
}

/// A note's text and its signatures, verified or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    text: String,
    signatures: Vec<NoteSignature>,
}

fn check_text(text: &str) -> Result<(), Error> {
    if !text.ends_with('\n') {
        return Err(Error::MalformedNote("the text does not end with a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::MalformedNote("the text holds a control character"));
    }
    Ok(())
}

impl SignedNote {
    /// An unsigned note, to be signed with [`SignedNote::sign`].
    pub fn new(text: String) -> Result<Self, Error> {
        check_text(&text)?;
        Ok(SignedNote {
            text,
            signatures: Vec::new(),
        })
    }

    pub fn parse(note: &str) -> Result<Self, Error> {
        let split = note
            .rfind("\n\n")
            .ok_or(Error::MalformedNote("no blank line before the signatures"))?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        check_text(text)?;
        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(Error::MalformedNote(
                "the signatures do not end with a newline",
            ));
        }
        // Split on '\n' alone: `lines()` would also drop a '\r', which the format does not allow.
        let signatures = signatures[..signatures.len() - 1]
            .split('\n')
            .map(NoteSignature::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if signatures.len() > MAX_SIGNATURES {
            return Err(Error::MalformedNote("too many signatures"));
        }
        Ok(SignedNote {
            text: text.to_owned(),
            signatures,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds the signature of a note key ([`KeyType::Ed25519`]).
    pub fn sign(&mut self, key: &SignerKey) -> Result<(), Error> {
        if key.key_type != KeyType::Ed25519 {
            return Err(Error::MalformedKey("a cosignature key signs with cosign"));
        }
        let signature = key.key.sign(self.text.as_bytes()).to_bytes().to_vec();
        self.push(key, signature);
        Ok(())
    }

    /// Adds a witness's cosignature ([`KeyType::CosignatureV1`]) made at `timestamp` (seconds
    /// since the epoch).
    pub fn cosign(&mut self, key: &SignerKey, timestamp: u64) -> Result<(), Error> {
        if key.key_type != KeyType::CosignatureV1 {
            return Err(Error::MalformedKey("a note key signs with sign"));
        }
        let signature = key.key.sign(&self.cosigned_message(timestamp));
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&signature.to_bytes());
        self.push(key, bytes);
        Ok(())
    }

    fn push(&mut self, key: &SignerKey, signature: Vec<u8>) {
        self.signatures.push(NoteSignature {
            name: key.name.clone(),
            key_id: key.id(),
            signature,
        });
    }

    fn cosigned_message(&self, timestamp: u64) -> Vec<u8> {
        format!("{COSIGNATURE_HEADER}time {timestamp}\n{}", self.text).into_bytes()
    }

    /// The signature lines (as in the note, newline included) that claim to be `key`'s: what a
    /// log keeps of a witness's cosignature, to serve with its own note.
    pub fn signature_lines_of(&self, key: &VerifierKey) -> Vec<String> {
        self.signatures
            .iter()
            .filter(|s| s.name == key.name && s.key_id == key.id)
            .map(NoteSignature::line)
            .collect()
    }

    /// Verifies the signature of `key` on this note. Returns the cosignature's timestamp for a
    /// witness key, `None` for a note key. Signatures by other keys are ignored, as the format
    /// asks; a signature line that claims `key` and does not verify is an error.
    pub fn verify(&self, key: &VerifierKey) -> Result<Option<u64>, Error> {
        let mine: Vec<&NoteSignature> = self
            .signatures
            .iter()
            .filter(|s| s.name == key.name && s.key_id == key.id)
            .collect();
        let Some((first, others)) = mine.split_first() else {
            return Err(Error::Unsigned {
                name: key.name.clone(),
            });
        };
        let timestamp = self.verify_one(first, key)?;
        for other in others {
            self.verify_one(other, key)?;
        }
        Ok(timestamp)
    }

    fn verify_one(&self, sig: &NoteSignature, key: &VerifierKey) -> Result<Option<u64>, Error> {
        let bad = || Error::BadSignature {
            name: key.name.clone(),
        };
        let (message, signature, timestamp) = match key.key_type {
            KeyType::Ed25519 => (self.text.as_bytes().to_vec(), &sig.signature[..], None),
            KeyType::CosignatureV1 => {
                if sig.signature.len() < 8 {
                    return Err(bad());
                }
                let (time, signature) = sig.signature.split_at(8);
                let mut be = [0u8; 8];
                be.copy_from_slice(time);
                let timestamp = u64::from_be_bytes(be);
                if timestamp > i64::MAX as u64 {
                    return Err(bad());
                }
                (self.cosigned_message(timestamp), signature, Some(timestamp))
            }
        };
        let signature = Signature::from_slice(signature).map_err(|_| bad())?;
        key.key
            .verify_strict(&message, &signature)
            .map_err(|_| bad())?;
        Ok(timestamp)
    }
}

impl fmt::Display for SignedNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for signature in &self.signatures {
            f.write_str(&signature.line())?;
        }
        Ok(())
    }
}
