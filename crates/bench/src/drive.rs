//! The load generator: one tokio task per connection, each sending its next request as soon as
//! the last one is answered (a closed loop), first for a warm-up that is not counted, then for
//! the measured window. Latencies go into an HDR histogram per task (microseconds, 3
//! significant digits), merged per group of connections at the end.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::scenarios::Worker;

/// What one group of connections achieved in the measured window.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub connections: usize,
    pub requests: u64,
    pub errors: u64,
    /// What the requests carried, where that is not one thing per request (FHIR resources).
    pub units: u64,
    pub seconds: f64,
    pub histogram: Histogram<u64>,
    pub first_error: Option<String>,
}

impl Measurement {
    fn new(connections: usize, empty: &Histogram<u64>) -> Self {
        Self {
            connections,
            requests: 0,
            errors: 0,
            units: 0,
            seconds: 0.0,
            histogram: empty.clone(),
            first_error: None,
        }
    }

    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    pub fn units_per_second(&self) -> f64 {
        self.units as f64 / self.seconds.max(1e-9)
    }

    /// Milliseconds at quantile `q` (0.0 to 1.0).
    pub fn ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }
}

/// 1 µs to 10 minutes, 3 significant digits.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

struct TaskResult {
    group: usize,
    requests: u64,
    errors: u64,
    units: u64,
    histogram: Histogram<u64>,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

/// Run `workers` (each tagged with its group) for `warmup` and then `window`; one
/// `Measurement` per group, in group order.
pub async fn drive(
    workers: Vec<(usize, Worker)>,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Vec<Measurement>> {
    let empty = histogram()?;
    let groups = workers.iter().map(|(g, _)| g + 1).max().unwrap_or(0);
    let mut measurements: Vec<Measurement> = (0..groups)
        .map(|g| Measurement::new(workers.iter().filter(|(w, _)| *w == g).count(), &empty))
        .collect();
    let start = Instant::now();
    let measured_from = start + warmup;
    let end = measured_from + window;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|(group, mut worker)| {
            let histogram = empty.clone();
            tokio::spawn(async move {
                let mut result = TaskResult {
                    group,
                    requests: 0,
                    errors: 0,
                    units: 0,
                    histogram,
                    first_error: None,
                    last_done: None,
                };
                let mut n = 0u64;
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let outcome = worker.call(n).await;
                    n += 1;
                    let done = Instant::now();
                    if sent < measured_from {
                        continue;
                    }
                    result.last_done = Some(done);
                    match outcome {
                        Ok(units) => {
                            result.requests += 1;
                            result.units += units;
                            let micros = done.duration_since(sent).as_micros();
                            result
                                .histogram
                                .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                        }
                        Err(e) => {
                            result.errors += 1;
                            if result.first_error.is_none() {
                                result.first_error = Some(format!("{e:#}"));
                            }
                            // A refused connection answers at once; do not spin on it.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                result
            })
        })
        .collect();
    let mut last_done = measured_from;
    for task in tasks {
        match task.await {
            Ok(r) => {
                let m = &mut measurements[r.group];
                m.requests += r.requests;
                m.errors += r.errors;
                m.units += r.units;
                let _ = m.histogram.add(&r.histogram);
                if m.first_error.is_none() {
                    m.first_error = r.first_error;
                }
                if let Some(t) = r.last_done {
                    last_done = last_done.max(t);
                }
            }
            Err(e) => {
                if let Some(m) = measurements.first_mut() {
                    m.errors += 1;
                    m.first_error
                        .get_or_insert_with(|| format!("load task failed: {e}"));
                }
            }
        }
    }
    // Requests sent before the end are counted, so the window runs until the last answer.
    let seconds = last_done
        .duration_since(measured_from)
        .as_secs_f64()
        .max(window.as_secs_f64());
    for m in &mut measurements {
        m.seconds = seconds;
    }
    Ok(measurements)
}
