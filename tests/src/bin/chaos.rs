//! `chaos`: the chaos suite at scale (docs/chaos.md). Thousands of blobs through the lister and
//! fetcher binaries (release builds when present, else debug), every emulator fault, AWS errors
//! at the adapter boundary, processes killed at random points, content late by up to 6 days,
//! blobs that fail for good; prints the summary table and exits non-zero when any assertion
//! fails.
//!
//! ```sh
//! cargo build -p lister -p fetcher            # or --release, or bash scripts/lambda-build.sh
//! cargo run -p integration-tests --bin chaos -- --seed 7 --blobs 3000
//! ```
//! Uses `MOTO_ENDPOINT` when set, else starts `.venv/bin/moto_server` itself.
// A test harness: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use integration_tests::chaos::{self, ChaosConfig};
use integration_tests::moto::MotoServer;
use integration_tests::runtime::preferred_binary;

const HELP: &str = "chaos [--seed N (1)] [--blobs N (3000)] [--tenants N (4)] [--steps N] \
[--fetchers N (3)] [--kill-lister P] [--kill-fetcher P] [--aws-faults P (total rate, split \
throttle/500/drop as 3:2:1)] [--failing-blobs P (0.02: fraction of blobs every GET of which is \
cut short)] [--max-late-hours H (143)] [--reconcile-every MINUTES (60)] [--quiet]";

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut seed = 1u64;
    let mut blobs = 3000usize;
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut verbose = true;
    let mut i = 0;
    while i < argv.len() {
        let value = || {
            argv.get(i + 1)
                .cloned()
                .unwrap_or_else(|| panic!("{} needs a value (see --help)", argv[i]))
        };
        match argv[i].as_str() {
            "--seed" => seed = value().parse().expect("--seed: a whole number"),
            "--blobs" => blobs = value().parse().expect("--blobs: a whole number"),
            "--tenants" | "--steps" | "--fetchers" | "--kill-lister" | "--kill-fetcher"
            | "--aws-faults" | "--failing-blobs" | "--max-late-hours" | "--reconcile-every" => {
                overrides.push((argv[i].clone(), value()));
            }
            "--quiet" => {
                verbose = false;
                i += 1;
                continue;
            }
            "-h" | "--help" => {
                println!("{HELP}");
                return std::process::ExitCode::SUCCESS;
            }
            other => panic!("unknown argument {other} (see --help)"),
        }
        i += 2;
    }
    let bin = |name: &str| {
        let (p, kind) = preferred_binary(name).unwrap_or_else(|| {
            panic!("no {name} binary: run `cargo build -p lister -p fetcher` (or --release)")
        });
        (p, kind.to_owned())
    };
    let (moto_url, moto_server) = MotoServer::from_env_or_start();
    let mut c = ChaosConfig::with_binaries(seed, blobs, &moto_url, bin("lister"), bin("fetcher"));
    c.verbose = verbose;
    c.fetchers = 3;
    for (k, v) in &overrides {
        let num = |v: &str| -> f64 { v.parse().unwrap_or_else(|_| panic!("{k}: not a number")) };
        match k.as_str() {
            "--tenants" => c.tenants = num(v) as usize,
            "--steps" => c.clock_steps = num(v) as u32,
            "--fetchers" => c.fetchers = num(v) as usize,
            "--kill-lister" => c.kill_lister = num(v),
            "--kill-fetcher" => c.kill_fetcher = num(v),
            "--failing-blobs" => c.failing_blob_fraction = num(v),
            "--max-late-hours" => c.max_late_secs = (num(v) * 3600.0) as i64,
            "--reconcile-every" => c.reconcile_every_minutes = num(v) as u32,
            "--aws-faults" => {
                let total = num(v);
                c.aws.throttle = total / 2.0;
                c.aws.error = total / 3.0;
                c.aws.drop = total / 6.0;
            }
            _ => unreachable!(),
        }
    }
    let args = argv.join(" ");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let summary = runtime.block_on(chaos::run(c));
    println!("# chaos {args}");
    println!();
    print!("{summary}");
    drop(runtime);
    drop(moto_server);
    if summary.ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
