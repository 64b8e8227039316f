//! Fault injection: each rule fires at a rate (seeded, so a run is reproducible) or on every
//! N-th matching request, at most `limit` times.

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
        }
    }

    /// The first rule that fires for this request, in scenario order. Every matching rule counts
    /// the request, so `every = N` means every N-th request of that endpoint.
    pub(crate) fn decide(&mut self, endpoint: Endpoint, tenant: Option<&str>) -> Option<Fired> {
        let mut out = None;
        for rule in &mut self.rules {
            let s = &rule.spec;
            if !s.endpoints.contains(&endpoint) {
                continue;
            }
            if let Some(t) = &s.tenant
                && !tenant.is_some_and(|x| x.eq_ignore_ascii_case(t))
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
            .map(|_| e.decide(Endpoint::Blob, None).is_some())
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
        assert!(e.decide(Endpoint::Content, None).is_none());
        assert!(e.decide(Endpoint::Blob, None).is_some());
    }

    #[test]
    fn same_seed_same_firings() {
        let run = |seed| {
            let mut e = FaultEngine::new(
                &[spec(FaultKind::InternalError, Some(0.3), None, None)],
                seed,
            );
            (0..200)
                .map(|_| e.decide(Endpoint::Blob, None).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
