//! Latency statistics and their two renderings: etcd benchmark's text report (summary,
//! histogram, percentiles) and `--json`.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Default)]
pub struct Report {
    pub latencies: Vec<Duration>,
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

pub struct Summary {
    pub ops: usize,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub min: f64,
}

/// The value below which `q` of the sorted samples fall.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

impl Report {
    pub fn summary(&self) -> Summary {
        let mut secs: Vec<f64> = self.latencies.iter().map(Duration::as_secs_f64).collect();
        secs.sort_by(|a, b| a.total_cmp(b));
        let n = secs.len();
        Summary {
            ops: n,
            errors: self.errors.values().sum(),
            ops_per_sec: n as f64 / self.elapsed.as_secs_f64().max(1e-9),
            mean: secs.iter().sum::<f64>() / n.max(1) as f64,
            p50: percentile(&secs, 0.5),
            p90: percentile(&secs, 0.9),
            p99: percentile(&secs, 0.99),
            p999: percentile(&secs, 0.999),
            max: secs.last().copied().unwrap_or(0.0),
            min: secs.first().copied().unwrap_or(0.0),
        }
    }

    pub fn text(&self, workload: &str) -> String {
        let s = self.summary();
        let mut out = format!(
            "\nSummary ({workload}):\n  Total:\t{:.4} secs.\n  Slowest:\t{:.4} secs.\n  Fastest:\t{:.4} secs.\n  Average:\t{:.4} secs.\n  Requests/sec:\t{:.4}\n",
            self.elapsed.as_secs_f64(),
            s.max,
            s.min,
            s.mean,
            s.ops_per_sec
        );
        out.push_str("\nResponse time histogram:\n");
        let buckets = 10;
        let span = (s.max - s.min).max(1e-9);
        let mut counts = vec![0usize; buckets + 1];
        for l in &self.latencies {
            let i = (((l.as_secs_f64() - s.min) / span) * buckets as f64) as usize;
            counts[i.min(buckets)] += 1;
        }
        let most = counts.iter().copied().max().unwrap_or(1).max(1);
        for (i, c) in counts.iter().enumerate() {
            let mark = s.min + span * i as f64 / buckets as f64;
            let bar = "∎".repeat(c * 40 / most);
            out.push_str(&format!("  {mark:.4} [{c}]\t|{bar}\n"));
        }
        out.push_str("\nLatency distribution:\n");
        for (name, v) in [
            ("50%", s.p50),
            ("90%", s.p90),
            ("99%", s.p99),
            ("99.9%", s.p999),
        ] {
            out.push_str(&format!("  {name} in {v:.4} secs.\n"));
        }
        if !self.errors.is_empty() {
            out.push_str("\nError distribution:\n");
            for (e, n) in &self.errors {
                out.push_str(&format!("  [{n}]\t{e}\n"));
            }
        }
        out
    }

    pub fn json(&self, workload: &str, clients: usize) -> String {
        let s = self.summary();
        let ms = |v: f64| (v * 1e6).round() / 1e3;
        serde_json::json!({
            "workload": workload,
            "clients": clients,
            "ops": s.ops,
            "errors": s.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ops_per_sec": s.ops_per_sec,
            "latency_ms": {
                "mean": ms(s.mean), "p50": ms(s.p50), "p90": ms(s.p90), "p99": ms(s.p99),
                "p99.9": ms(s.p999), "max": ms(s.max)
            },
            "error_kinds": self.errors,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_set() {
        let r = Report {
            latencies: (1..=1000).map(Duration::from_millis).collect(),
            errors: BTreeMap::new(),
            elapsed: Duration::from_secs(2),
        };
        let s = r.summary();
        assert_eq!(s.ops, 1000);
        assert!((s.ops_per_sec - 500.0).abs() < 1e-9);
        assert!((s.p50 - 0.5).abs() < 1e-9);
        assert!((s.p99 - 0.99).abs() < 1e-9);
        assert!((s.p999 - 0.999).abs() < 1e-9);
        assert!((s.max - 1.0).abs() < 1e-9);
    }
}
