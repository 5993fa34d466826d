//! Prometheus metrics in the text exposition format: requests by endpoint and status, request
//! latency, batch sizes, loaded artifacts, queue depth.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;

const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const SIZE_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug)]
struct Recorded {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    batch_rows: Histogram,
    batch_tasks: Histogram,
    most_tasks: usize,
}

/// The server's counters; shared by the HTTP handlers and the batching worker.
#[derive(Debug)]
pub struct Metrics {
    recorded: Mutex<Recorded>,
    loaded_artifacts: AtomicUsize,
    loaded_bytes: AtomicUsize,
    queued: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            recorded: Mutex::new(Recorded {
                requests: BTreeMap::new(),
                latency: BTreeMap::new(),
                batch_rows: Histogram::new(&SIZE_BUCKETS),
                batch_tasks: Histogram::new(&SIZE_BUCKETS),
                most_tasks: 0,
            }),
            loaded_artifacts: AtomicUsize::new(0),
            loaded_bytes: AtomicUsize::new(0),
            queued: AtomicI64::new(0),
        }
    }
}

impl Metrics {
    pub(crate) fn request(&self, endpoint: &'static str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.recorded.lock() {
            *r.requests.entry((endpoint, status)).or_default() += 1;
            r.latency
                .entry(endpoint)
                .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
                .observe(seconds);
        }
    }

    /// One base forward of `rows` rows from `tasks` tasks.
    pub(crate) fn batch(&self, rows: usize, tasks: usize) {
        if let Ok(mut r) = self.recorded.lock() {
            r.batch_rows.observe(rows as f64);
            r.batch_tasks.observe(tasks as f64);
            r.most_tasks = r.most_tasks.max(tasks);
        }
    }

    pub(crate) fn loaded(&self, artifacts: usize, bytes: usize) {
        self.loaded_artifacts.store(artifacts, Ordering::Relaxed);
        self.loaded_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn queue_change(&self, by: i64) {
        self.queued.fetch_add(by, Ordering::Relaxed);
    }

    /// Total requests answered with `status` on `endpoint` so far.
    pub fn requests(&self, endpoint: &str, status: u16) -> u64 {
        self.recorded.lock().map_or(0, |r| {
            r.requests
                .iter()
                .filter(|((e, s), _)| *e == endpoint && *s == status)
                .map(|(_, n)| n)
                .sum()
        })
    }

    /// Base forwards run so far, and the most tasks any of them served.
    pub fn forwards(&self) -> (u64, usize) {
        self.recorded
            .lock()
            .map_or((0, 0), |r| (r.batch_rows.count, r.most_tasks))
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(r) = self.recorded.lock() else {
            return out;
        };
        out.push_str("# HELP petl_requests_total Requests answered, by endpoint and HTTP status.\n");
        out.push_str("# TYPE petl_requests_total counter\n");
        for ((endpoint, status), n) in &r.requests {
            let _ = writeln!(
                out,
                "petl_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP petl_request_duration_seconds Time from request to answer.\n");
        out.push_str("# TYPE petl_request_duration_seconds histogram\n");
        for (endpoint, h) in &r.latency {
            h.render(
                &mut out,
                "petl_request_duration_seconds",
                &format!("endpoint=\"{endpoint}\""),
            );
        }
        out.push_str("# HELP petl_batch_rows Rows per base forward.\n# TYPE petl_batch_rows histogram\n");
        r.batch_rows.render(&mut out, "petl_batch_rows", "");
        out.push_str("# HELP petl_batch_tasks Tasks per base forward.\n# TYPE petl_batch_tasks histogram\n");
        r.batch_tasks.render(&mut out, "petl_batch_tasks", "");
        let gauges = [
            (
                "petl_loaded_artifacts",
                "Task artifacts in memory.",
                self.loaded_artifacts.load(Ordering::Relaxed) as i64,
            ),
            (
                "petl_loaded_artifact_bytes",
                "Estimated memory of the loaded task artifacts.",
                self.loaded_bytes.load(Ordering::Relaxed) as i64,
            ),
            (
                "petl_queued_requests",
                "Requests waiting for the batching worker.",
                self.queued.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
