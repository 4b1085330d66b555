//! Summaries of repeated measurements: median and spread, as the report
//! shows them. Percentiles interpolate linearly between the two nearest
//! samples, so a run of 30 gives a p90 between its 27th and 28th values.

use serde::Serialize;

/// A set of samples (milliseconds, requests per second, ... — the caller
/// names the unit) with the figures the report prints.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Every sample, in the order measured (drift shows up here); empty
    /// when dropped for size (per-request latencies of a load run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarise `samples`; `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            n: sorted.len(),
            median: percentile_of_sorted(&sorted, 50.0),
            p10: percentile_of_sorted(&sorted, 10.0),
            p90: percentile_of_sorted(&sorted, 90.0),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            samples: samples.iter().map(|v| round3(*v)).collect(),
        })
    }
}

impl Summary {
    /// The same figures without the samples: a load run has tens of
    /// thousands, too many for results.json.
    pub fn without_samples(mut self) -> Summary {
        self.samples = Vec::new();
        self
    }
}

/// The `pct`th percentile (0–100) of already sorted values.
pub fn percentile_of_sorted(sorted: &[f64], pct: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = pct.clamp(0.0, 100.0) / 100.0 * (n - 1) as f64;
            let low = rank.floor() as usize;
            let high = rank.ceil() as usize;
            sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
        }
    }
}

/// The `pct`th percentile of unsorted values.
pub fn percentile(values: &[f64], pct: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_of_sorted(&sorted, pct)
}

/// Three decimals are plenty for milliseconds and keep results.json readable.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_neighbours() {
        let values: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 6.0);
        assert_eq!(percentile(&values, 10.0), 2.0);
        assert_eq!(percentile(&values, 95.0), 10.5);
        assert_eq!(percentile(&[4.0, 1.0], 50.0), 2.5);
    }

    #[test]
    fn a_summary_keeps_samples_in_measured_order() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 3.0));
        assert_eq!(s.samples, vec![3.0, 1.0, 2.0]);
        assert!(Summary::of(&[]).is_none());
    }
}
