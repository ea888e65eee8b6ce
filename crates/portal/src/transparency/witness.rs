//! `portal witness`: run by another organisation (the health data authority, say), it polls
//! the portal's newest checkpoint, checks that it extends the last one it cosigned (a
//! consistency proof), cosigns it, hands the cosignature back and keeps the checkpoint as its
//! own copy of the log's history. A portal that rewrote its history, even with its signing
//! key, cannot show this witness a checkpoint consistent with that copy: the witness refuses
//! and says so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use transparency_log::{
    verify_consistency, Checkpoint, Hash, KeyType, SignedNote, SignerKey, VerifierKey,
};

use crate::config::load_or_make_key;

#[derive(Debug, Clone, Args)]
pub struct WitnessArgs {
    /// The portal's origin, e.g. https://portal.example
    #[arg(long, env = "WITNESS_LOG_URL")]
    pub log_url: String,
    /// The log's verifier key, as the portal's operator published it (obtain it by a channel
    /// of your own, not from the portal).
    #[arg(long, env = "WITNESS_LOG_KEY")]
    pub log_key: String,
    /// This witness's signing key; made at first start when missing.
    #[arg(long, env = "WITNESS_KEY_FILE")]
    pub key_file: PathBuf,
    /// This witness's name, used when its key is made.
    #[arg(long, env = "WITNESS_NAME", default_value = "witness.localhost")]
    pub name: String,
    /// The last checkpoint this witness cosigned: its own copy of the log's history.
    #[arg(long, env = "WITNESS_STATE_FILE")]
    pub state_file: PathBuf,
    /// Seconds between polls.
    #[arg(long, env = "WITNESS_INTERVAL", default_value = "10")]
    pub interval: u64,
    /// Poll once and exit: 0 cosigned, 1 the log broke its history, 2 an error.
    #[arg(long)]
    pub once: bool,
    /// Print this witness's verifier key (for the portal's PORTAL_WITNESS_KEYS) and exit.
    #[arg(long)]
    pub show_key: bool,
}

/// What one poll found.
#[derive(Debug)]
pub enum Round {
    Cosigned {
        size: u64,
    },
    /// The log showed a checkpoint that does not extend the one this witness holds.
    Fork(String),
}

pub struct Witness {
    client: reqwest::Client,
    log_url: String,
    log_key: VerifierKey,
    key: SignerKey,
    state_file: PathBuf,
}

impl Witness {
    pub fn new(args: &WitnessArgs) -> anyhow::Result<Self> {
        let log_key = VerifierKey::parse(&args.log_key).context("--log-key")?;
        if log_key.key_type() != KeyType::Ed25519 {
            bail!("--log-key: not a log's key");
        }
        let key = load_or_make_key(&args.key_file, &args.name, KeyType::CosignatureV1)
            .map_err(|e| anyhow::anyhow!("--key-file: {e}"))?;
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            log_url: args.log_url.trim_end_matches('/').to_string(),
            log_key,
            key,
            state_file: args.state_file.clone(),
        })
    }

    pub fn verifier(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// Fetch, check, cosign, hand back, remember.
    pub async fn round(&self) -> anyhow::Result<Round> {
        let served = self.get_text("/transparency/checkpoint").await?;
        let mut note = SignedNote::parse(&served).context("the served checkpoint")?;
        let new = Checkpoint::open(&note, &self.log_key).context("the served checkpoint")?;
        if let Some(old) = self.held()? {
            if let Some(problem) = self.extends(&old, &new).await? {
                return Ok(Round::Fork(problem));
            }
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        note.cosign(&self.key, u64::try_from(now).unwrap_or_default())?;
        let cosigned = note.to_string();
        let answer = self
            .client
            .post(format!("{}/transparency/cosignature", self.log_url))
            .body(cosigned.clone())
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!(
                "the log refused the cosignature: {} {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
        }
        write_atomically(&self.state_file, &cosigned)?;
        Ok(Round::Cosigned { size: new.size })
    }

    /// The checkpoint this witness last cosigned, checked again with both keys.
    fn held(&self) -> anyhow::Result<Option<Checkpoint>> {
        let text = match std::fs::read_to_string(&self.state_file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("--state-file"),
        };
        let note = SignedNote::parse(&text).context("--state-file")?;
        note.verify(&self.verifier()).context("--state-file")?;
        Ok(Some(Checkpoint::open(&note, &self.log_key)?))
    }

    /// `None` if `new` extends `old`; what is wrong otherwise.
    async fn extends(&self, old: &Checkpoint, new: &Checkpoint) -> anyhow::Result<Option<String>> {
        if new.size < old.size {
            return Ok(Some(format!(
                "the log now has {} events, fewer than the {} this witness cosigned",
                new.size, old.size
            )));
        }
        if new.size == old.size {
            return Ok((new.root != old.root).then(|| {
                format!(
                    "the log signed two different trees of size {}: {} and, earlier, {}",
                    new.size, new.root, old.root
                )
            }));
        }
        #[derive(Deserialize)]
        struct Proof {
            proof: Vec<Hash>,
        }
        let path = format!(
            "/transparency/consistency?old={}&new={}",
            old.size, new.size
        );
        let proof: Proof =
            serde_json::from_str(&self.get_text(&path).await?).context("the consistency proof")?;
        Ok(
            verify_consistency(old.size, new.size, &proof.proof, &old.root, &new.root)
                .err()
                .map(|e| {
                    format!(
                        "the tree of size {} does not extend the tree of size {} this witness cosigned: {e}",
                        new.size, old.size
                    )
                }),
        )
    }

    async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let answer = self
            .client
            .get(format!("{}{path}", self.log_url))
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!("GET {path}: {}", answer.status());
        }
        Ok(answer.text().await?)
    }
}

/// Replace `path` with `text` so that a crash leaves the old copy or the new, never half.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, text)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// The command: poll once or forever. A fork is never cosigned over: the witness keeps its
/// copy and keeps refusing until people look.
pub async fn run(args: &WitnessArgs) -> anyhow::Result<bool> {
    let witness = Witness::new(args)?;
    if args.show_key {
        println!("{}", witness.verifier());
        return Ok(true);
    }
    loop {
        let round = witness.round().await;
        match &round {
            Ok(Round::Cosigned { size }) => println!("cosigned the checkpoint of size {size}"),
            Ok(Round::Fork(problem)) => println!("FORK: {problem}"),
            Err(e) => eprintln!("witness round failed: {e:#}"),
        }
        if args.once {
            return match round {
                Ok(Round::Cosigned { .. }) => Ok(true),
                Ok(Round::Fork(_)) => Ok(false),
                Err(e) => Err(e),
            };
        }
        tokio::time::sleep(Duration::from_secs(args.interval.max(1))).await;
    }
}
