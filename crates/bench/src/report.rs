//! The results: a table on stdout and the same figures as JSON.

use serde::Serialize;

use crate::drive::Measurement;
use crate::load::LoadReport;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The scenario's name on the command line (`ceiling` for the ceiling).
    pub scenario: String,
    pub title: String,
    pub connections: usize,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Requests per second over the ceiling's.
    pub ratio_to_ceiling: Option<f64>,
    /// The portal's peak resident memory during the scenario (sign-ins before it included).
    pub server_peak_rss_mib: Option<f64>,
    /// FHIR resources stored per second (the import scenario).
    pub resources_per_second: Option<f64>,
    pub first_error: Option<String>,
}

impl Row {
    pub fn new(scenario: &str, title: &str, m: &Measurement) -> Self {
        Self {
            scenario: scenario.into(),
            title: title.into(),
            connections: m.connections,
            requests: m.requests,
            errors: m.errors,
            seconds: m.seconds,
            requests_per_second: m.per_second(),
            p50_ms: m.ms(0.50),
            p90_ms: m.ms(0.90),
            p99_ms: m.ms(0.99),
            max_ms: m.max_ms(),
            ratio_to_ceiling: None,
            server_peak_rss_mib: None,
            resources_per_second: None,
            first_error: m.first_error.clone(),
        }
    }

    /// A scenario that could not run at all.
    pub fn failed(scenario: &str, title: &str, connections: usize, error: String) -> Self {
        Self {
            scenario: scenario.into(),
            title: title.into(),
            connections,
            requests: 0,
            errors: 1,
            seconds: 0.0,
            requests_per_second: 0.0,
            p50_ms: 0.0,
            p90_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            ratio_to_ceiling: None,
            server_peak_rss_mib: None,
            resources_per_second: None,
            first_error: Some(error),
        }
    }

    /// Errors, or nothing answered: the run does not count.
    pub fn is_bad(&self) -> bool {
        self.errors > 0 || self.requests == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let memory_kb: f64 = field(&meminfo, "MemTotal")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: field(&cpuinfo, "model name"),
            memory_gib: (memory_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub date: String,
    /// The command line of the run.
    pub command: String,
    pub machine: Machine,
    pub engine: String,
    pub database: String,
    pub patients: u64,
    /// The load, when this run loaded the database.
    pub load: Option<LoadReport>,
    pub connections: usize,
    pub warmup_seconds: f64,
    pub seconds: f64,
    pub portal_binary: String,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn is_bad(&self) -> bool {
        self.rows.iter().any(Row::is_bad)
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "portal-bench {} | {} | {} patients | {} connections | {} s per scenario after {} s warm-up\n\
             machine: {} CPUs ({}), {} GiB, Linux {}\n\
             command: {}\n\n",
            self.date,
            self.engine,
            self.patients,
            self.connections,
            self.seconds,
            self.warmup_seconds,
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine.memory_gib,
            self.machine.kernel,
            self.command
        );
        out.push_str(&format!(
            "{:<46} {:>5} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8}  {}\n",
            "scenario",
            "conns",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "ceiling",
            "peak RSS",
            "note"
        ));
        for r in &self.rows {
            let note = match (&r.resources_per_second, &r.first_error) {
                (_, Some(e)) => format!("first error: {}", one_line(e, 100)),
                (Some(rps), None) => format!("{rps:.0} resources/s"),
                (None, None) => String::new(),
            };
            out.push_str(&format!(
                "{:<46} {:>5} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>6} {:>8} {:>8}  {}\n",
                r.title,
                r.connections,
                r.requests_per_second,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.max_ms,
                r.errors,
                r.ratio_to_ceiling
                    .map_or("-".into(), |x| format!("{:.2} %", x * 100.0)),
                r.server_peak_rss_mib
                    .map_or("-".into(), |m| format!("{m:.0} MiB")),
                note
            ));
        }
        out
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(max).collect()
}
