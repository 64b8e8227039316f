//! Ingestion lag of a blob's records: how long after its event time each record reached us.

use serde::Serialize;

/// Values kept per blob: the 11 deciles (minimum, 10 %, …, 90 %, maximum).
const SAMPLE: usize = 11;

/// The lag of a blob's records (received − event time, in milliseconds; records without a
/// usable event time are left out, a negative lag from clock skew counts as 0).
///
/// Kept small on purpose: the deciles of the blob's lags, so the maximum is exact (what an
/// alarm wants) and CloudWatch's percentiles over many blobs approximate the per-record
/// distribution, at no more than 11 values per blob whatever its size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LagSample {
    /// Records with an event time.
    pub records: u64,
    /// The largest lag.
    pub max_ms: u64,
    /// The deciles, ascending (all the lags when there are at most 11).
    pub sample_ms: Vec<u64>,
}

impl LagSample {
    /// The sample of these lags.
    pub fn from_lags(mut lags: Vec<u64>) -> LagSample {
        lags.sort_unstable();
        let n = lags.len();
        let sample_ms = if n <= SAMPLE {
            lags.clone()
        } else {
            (0..SAMPLE)
                .map(|i| lags[(i * (n - 1) + (SAMPLE - 1) / 2) / (SAMPLE - 1)])
                .collect()
        };
        LagSample {
            records: n as u64,
            max_ms: lags.last().copied().unwrap_or(0),
            sample_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_blobs_keep_every_lag_and_large_ones_their_deciles_with_the_exact_max() {
        let s = LagSample::from_lags(vec![5, 1, 3]);
        assert_eq!((s.records, s.max_ms, s.sample_ms), (3, 5, vec![1, 3, 5]));
        let s = LagSample::from_lags((0..=1000).rev().collect());
        assert_eq!(s.records, 1001);
        assert_eq!(s.max_ms, 1000);
        assert_eq!(
            s.sample_ms,
            [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
        );
        assert_eq!(LagSample::from_lags(Vec::new()), LagSample::default());
    }
}
