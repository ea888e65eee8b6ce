//! `portal import FILES...`: FHIR Bundles (`.json`) and NDJSON files (`.ndjson`, one resource
//! per line) into the portal, idempotently (keyed on source system and resource id).
//! A Bundle is applied whole or not at all; a malformed NDJSON line is reported with its line
//! number and skipped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use access_control::audit::writer::AuditWriter;
use access_control::{Actor, Gate, PolicySettings, Reach, RequestContext};
use indicatif::{ProgressBar, ProgressStyle};
use records_domain::Db;
use serde_json::Value;
use uuid::Uuid;

use crate::fhir::ingest::{self, Summary, Writer};

const NDJSON_CHUNK: usize = 500;

#[derive(Debug, Default)]
pub struct Report {
    pub summary: Summary,
    /// file (and position) -> problem; those Bundles or lines were not applied
    pub errors: Vec<String>,
    pub resources_read: u64,
    pub seconds: f64,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.resources_read as f64 / self.seconds.max(1e-9)
    }
}

/// Whoever runs `portal import` holds the database's keys and so speaks for the population
/// register; each write is still decided and audited as theirs.
fn operator() -> Actor {
    Actor::system(
        Uuid::nil(),
        "portal import (operator)",
        Reach::PopulationRegister,
    )
}

pub async fn import_files(
    db: &Db,
    source_system: &str,
    files: &[PathBuf],
    progress: bool,
) -> Report {
    let started = Instant::now();
    let bar = if progress {
        ProgressBar::new(files.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // The guardian settings play no part in a source system's writes.
    let settings = PolicySettings::default();
    let audit = match AuditWriter::start(db).await {
        Ok(audit) => audit,
        Err(e) => {
            return Report {
                errors: vec![format!("the audit log cannot be written: {e}")],
                ..Report::default()
            }
        }
    };
    let gate = Gate {
        db,
        settings: &settings,
        audit: &audit,
    };
    let actor = operator();
    let ctx = RequestContext {
        client_addr: "command line".into(),
    };
    let writer = Writer {
        source_system,
        actor: &actor,
        ctx: &ctx,
    };
    let mut report = Report::default();
    for file in files {
        bar.set_message(
            file.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        );
        import_file(&gate, &writer, file, &mut report).await;
        bar.inc(1);
    }
    bar.finish_and_clear();
    report.seconds = started.elapsed().as_secs_f64();
    report
}

async fn import_file(gate: &Gate<'_>, writer: &Writer<'_>, file: &Path, report: &mut Report) {
    let name = file.display().to_string();
    let text = match tokio::fs::read_to_string(file).await {
        Ok(t) => t,
        Err(e) => return report.errors.push(format!("{name}: cannot read: {e}")),
    };
    if file.extension().is_some_and(|e| e == "ndjson") {
        return import_ndjson(gate, writer, &name, &text, report).await;
    }
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return report.errors.push(format!("{name}: not JSON: {e}")),
    };
    let result = if value["resourceType"] == "Bundle" {
        report.resources_read += value["entry"].as_array().map_or(0, |e| e.len() as u64);
        ingest::apply_bundle(gate, writer, &value).await
    } else {
        report.resources_read += 1;
        ingest::apply_resources(gate, writer, vec![(name.clone(), &value)]).await
    };
    match result {
        Ok(applied) => report.summary.merge(&applied.summary),
        Err(e) => report
            .errors
            .push(format!("{name}: {e} (the file was not applied)")),
    }
}

async fn import_ndjson(
    gate: &Gate<'_>,
    writer: &Writer<'_>,
    name: &str,
    text: &str,
    report: &mut Report,
) {
    let mut parsed: Vec<(String, Value)> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        report.resources_read += 1;
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => parsed.push((format!("{name}:{}", n + 1), v)),
            Ok(_) => report
                .errors
                .push(format!("{name}:{}: not a resource (skipped)", n + 1)),
            Err(e) => report
                .errors
                .push(format!("{name}:{}: not JSON: {e} (skipped)", n + 1)),
        }
    }
    for chunk in parsed.chunks(NDJSON_CHUNK) {
        let resources = chunk
            .iter()
            .map(|(location, v)| (location.clone(), v))
            .collect();
        match ingest::apply_resources(gate, writer, resources).await {
            Ok(applied) => report.summary.merge(&applied.summary),
            // One bad resource must not cost the chunk: retry its lines one by one.
            Err(_) => {
                for (location, v) in chunk {
                    match ingest::apply_resources(gate, writer, vec![(location.clone(), v)]).await {
                        Ok(applied) => report.summary.merge(&applied.summary),
                        Err(e) => report.errors.push(format!("{e} (skipped)")),
                    }
                }
            }
        }
    }
}

pub fn print(report: &Report) {
    println!(
        "{:<20} {:>9} {:>9} {:>10}",
        "resource", "inserted", "updated", "unchanged"
    );
    let kinds: std::collections::BTreeSet<&String> = report
        .summary
        .inserted
        .keys()
        .chain(report.summary.updated.keys())
        .chain(report.summary.unchanged.keys())
        .collect();
    for kind in kinds {
        let n = |m: &std::collections::BTreeMap<String, u64>| m.get(kind).copied().unwrap_or(0);
        println!(
            "{:<20} {:>9} {:>9} {:>10}",
            kind,
            n(&report.summary.inserted),
            n(&report.summary.updated),
            n(&report.summary.unchanged)
        );
    }
    for (kind, reasons) in &report.summary.skipped {
        for (reason, n) in reasons {
            println!("skipped {n} {kind}: {reason}");
        }
    }
    for e in &report.errors {
        println!("error: {e}");
    }
    println!(
        "{} resources read in {:.2} s ({:.0} resources/s), {} errors",
        report.resources_read,
        report.seconds,
        report.rate(),
        report.errors.len()
    );
}
