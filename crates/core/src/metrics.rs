//! What the domain measures about its background work: durations and sizes of finished
//! extractions and installations. Recorded here, exposed by the serving crate's admin port.
use prometheus_client::metrics::histogram::Histogram;
use std::sync::LazyLock;
use std::time::Duration;

/// Upper bounds (seconds) of extraction and installation durations.
const JOB_SECONDS_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// Upper bounds of extraction and installation sizes, in configuration objects.
const OBJECT_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];

/// Durations and sizes of one kind of job.
#[derive(Clone)]
pub struct Jobs {
    pub seconds: Histogram,
    pub objects: Histogram,
}

impl Jobs {
    fn new() -> Jobs {
        Jobs {
            seconds: Histogram::new(JOB_SECONDS_BUCKETS.iter().copied()),
            objects: Histogram::new(OBJECT_BUCKETS.iter().copied()),
        }
    }

    fn observe(&self, duration: Duration, objects: usize) {
        self.seconds.observe(duration.as_secs_f64());
        self.objects.observe(objects as f64);
    }
}

pub static EXTRACTIONS: LazyLock<Jobs> = LazyLock::new(Jobs::new);
pub static INSTALLATIONS: LazyLock<Jobs> = LazyLock::new(Jobs::new);

/// Records one finished extraction: how long it took and how many objects it produced.
pub fn record_extraction(duration: Duration, objects: usize) {
    EXTRACTIONS.observe(duration, objects);
}

/// Records one finished installation: how long it took and how many objects the package held.
pub fn record_installation(duration: Duration, objects: usize) {
    INSTALLATIONS.observe(duration, objects);
}
