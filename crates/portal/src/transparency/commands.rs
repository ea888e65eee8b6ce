//! The log's command-line tools: what `portal audit verify` trusts, `portal audit verify-proof`
//! (a patient's download checked without the portal's database) and `portal audit log-key`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use access_control::audit::verify::LogTrust;
use anyhow::Context;
use transparency_log::{verify_download, VerifierKey};

use crate::config::{DatabaseArgs, LogArgs};

/// The keys and outside checkpoints `audit verify` holds the log to. A missing key file is
/// not an error here: a database no portal has served has no checkpoints to check yet, and
/// any checkpoint it does hold then fails as unverifiable.
pub fn trust(
    database: &DatabaseArgs,
    log: &LogArgs,
    checkpoints: &[PathBuf],
) -> anyhow::Result<LogTrust> {
    let keys = match log.trusted(&database.database_url) {
        Ok(keys) => keys,
        Err(e)
            if log
                .key_path(&database.database_url)
                .is_ok_and(|p| !p.exists()) =>
        {
            eprintln!("note: {e}; signed checkpoints cannot be checked without the log's key");
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let outside = checkpoints
        .iter()
        .map(|path| std::fs::read_to_string(path).with_context(|| path.display().to_string()))
        .collect::<anyhow::Result<_>>()?;
    Ok(LogTrust { keys, outside })
}

pub fn verify_proof(file: &Path, log_key: Option<&str>) -> ExitCode {
    let checked = (|| {
        let json = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
        let published = log_key
            .map(VerifierKey::parse)
            .transpose()
            .context("--log-key")?;
        Ok::<_, anyhow::Error>(verify_download(&json, published.as_ref()))
    })();
    match checked {
        Ok(Ok(verified)) => {
            println!(
                "verified: {} event(s) are in the log {} of size {}, signed by {}",
                verified.events,
                verified.checkpoint.origin,
                verified.checkpoint.size,
                verified.log_key
            );
            for (witness, time) in &verified.witnesses {
                println!("cosigned by witness {witness} at {time}");
            }
            if log_key.is_none() {
                println!("compare the key above with the one the portal publishes");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            println!("NOT VERIFIED: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(2)
        }
    }
}

pub fn log_key(database: &DatabaseArgs, log: &LogArgs) -> anyhow::Result<()> {
    println!("{}", log.signer(&database.database_url)?.verifier());
    Ok(())
}
