//! Fault injection: each rule fires at a rate (seeded, so a run is reproducible) or on every
//! N-th matching request, at most `limit` times. A rule with `blob_fraction` applies only to
//! the blobs it selects (the same ones on every request).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::scenario::{Endpoint, FaultKind, FaultSpec};

/// A fault that fired, with what the handler needs to answer it.
#[derive(Debug, Clone)]
pub(crate) struct Fired {
    pub(crate) kind: FaultKind,
    pub(crate) delay_ms: u64,
    pub(crate) retry_after_secs: f64,
    /// The whole rule, for the parameters of the newer kinds (`location`, `truncate_at`, …).
    pub(crate) spec: FaultSpec,
    /// How many times this rule has fired, this time included (1 = first).
    pub(crate) firing: u64,
}

#[derive(Debug)]
struct Rule {
    spec: FaultSpec,
    matched: u64,
    fired: u64,
}

/// Decides, per request, which fault (if any) fires.
#[derive(Debug)]
pub(crate) struct FaultEngine {
    rules: Vec<Rule>,
    rng: StdRng,
    seed: u64,
}

/// True when rule number `rule` (its position in the scenario) with `blob_fraction = fraction`
/// selects the blob whose stable key is `blob` (tenant, content type and sequence number): a
/// pure function of the seed, so a selected blob is selected on every request, and the ground
/// truth can say which blobs a rule hits.
pub(crate) fn selects_blob(seed: u64, rule: usize, blob: &str, fraction: f64) -> bool {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(seed.to_le_bytes());
    h.update((rule as u64).to_le_bytes());
    h.update(blob.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // The top 53 bits as a fraction in [0, 1).
    #[allow(clippy::cast_precision_loss)]
    let x = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
    x < fraction
}

impl FaultEngine {
    pub(crate) fn new(specs: &[FaultSpec], seed: u64) -> FaultEngine {
        FaultEngine {
            rules: specs
                .iter()
                .map(|s| Rule {
                    spec: s.clone(),
                    matched: 0,
                    fired: 0,
                })
                .collect(),
            rng: StdRng::seed_from_u64(seed ^ 0xfa17),
            seed,
        }
    }

    /// The first rule that fires for this request, in scenario order. Every matching rule counts
    /// the request, so `every = N` means every N-th request of that endpoint. `blob` is the
    /// stable key of the blob requested (blob requests of a known blob only).
    pub(crate) fn decide(
        &mut self,
        endpoint: Endpoint,
        tenant: Option<&str>,
        blob: Option<&str>,
    ) -> Option<Fired> {
        let mut out = None;
        let seed = self.seed;
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let s = &rule.spec;
            if !s.endpoints.contains(&endpoint) {
                continue;
            }
            if let Some(t) = &s.tenant
                && !tenant.is_some_and(|x| x.eq_ignore_ascii_case(t))
            {
                continue;
            }
            if let Some(f) = s.blob_fraction
                && !blob.is_some_and(|b| selects_blob(seed, i, b, f))
            {
                continue;
            }
            rule.matched += 1;
            if s.limit.is_some_and(|l| rule.fired >= l) {
                continue;
            }
            let fire = match (s.rate, s.every) {
                (Some(r), _) => self.rng.random_bool(r.clamp(0.0, 1.0)),
                (None, Some(n)) => n > 0 && rule.matched % n == 0,
                (None, None) => false,
            };
            if fire && out.is_none() {
                rule.fired += 1;
                out = Some(Fired {
                    kind: s.kind,
                    delay_ms: s.delay_ms,
                    retry_after_secs: s.retry_after_secs,
                    spec: s.clone(),
                    firing: rule.fired,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        kind: FaultKind,
        rate: Option<f64>,
        every: Option<u64>,
        limit: Option<u64>,
    ) -> FaultSpec {
        FaultSpec {
            kind,
            endpoints: vec![Endpoint::Blob],
            tenant: None,
            rate,
            every,
            limit,
            blob_fraction: None,
            delay_ms: 0,
            retry_after_secs: 1.0,
            location: None,
            redirect_status: 302,
            body: None,
            truncate_at: 0.5,
            content_length: crate::scenario::LengthMode::Cut,
            interval_ms: 0,
            record_bytes: 1024,
        }
    }

    #[test]
    fn every_nth_fires_on_schedule_and_respects_limit() {
        let mut e = FaultEngine::new(&[spec(FaultKind::Af429, None, Some(3), Some(2))], 7);
        let fired: Vec<bool> = (0..12)
            .map(|_| e.decide(Endpoint::Blob, None, None).is_some())
            .collect();
        assert_eq!(
            fired,
            [
                false, false, true, false, false, true, false, false, false, false, false, false
            ]
        );
    }

    #[test]
    fn other_endpoints_are_untouched() {
        let mut e = FaultEngine::new(&[spec(FaultKind::Drop, Some(1.0), None, None)], 7);
        assert!(e.decide(Endpoint::Content, None, None).is_none());
        assert!(e.decide(Endpoint::Blob, None, None).is_some());
    }

    #[test]
    fn same_seed_same_firings() {
        let run = |seed| {
            let mut e = FaultEngine::new(
                &[spec(FaultKind::InternalError, Some(0.3), None, None)],
                seed,
            );
            (0..200)
                .map(|_| e.decide(Endpoint::Blob, None, None).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn a_blob_fraction_rule_hits_the_same_blobs_on_every_request() {
        let mut rule = spec(FaultKind::Truncate, None, Some(1), None);
        rule.blob_fraction = Some(0.25);
        let mut e = FaultEngine::new(&[rule], 7);
        let keys: Vec<String> = (0..400).map(|i| format!("t/Audit.General/{i}")).collect();
        let hit = |e: &mut FaultEngine| -> Vec<bool> {
            keys.iter()
                .map(|k| e.decide(Endpoint::Blob, Some("t"), Some(k)).is_some())
                .collect()
        };
        let first = hit(&mut e);
        assert_eq!(first, hit(&mut e), "the same blobs every time");
        let n = first.iter().filter(|h| **h).count();
        assert!((60..=140).contains(&n), "about a quarter selected: {n}");
        for (k, h) in keys.iter().zip(&first) {
            assert_eq!(*h, selects_blob(7, 0, k, 0.25), "the truth agrees: {k}");
        }
        // Not a blob request, or a blob the emulator does not know: never.
        assert!(e.decide(Endpoint::Blob, Some("t"), None).is_none());
        assert!(
            e.decide(Endpoint::Content, Some("t"), Some(&keys[0]))
                .is_none()
        );
        // Another rule position (or seed) selects other blobs.
        let other: Vec<bool> = keys.iter().map(|k| selects_blob(7, 1, k, 0.25)).collect();
        assert_ne!(first, other);
    }
}
