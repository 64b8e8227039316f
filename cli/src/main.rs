//! `o365-collector`: the operator CLI — local runs, the demo, tenants, the emulator.

mod backfill;
mod bench;
mod demo;
mod doctor;
mod keygen;
mod local;
mod normalize;
mod progress;
mod redrive;
mod run;
mod signals;
mod state;
mod status;
mod tenants;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "o365-collector",
    version,
    about = "Collect every Microsoft 365 audit record into your own AWS account (or a local folder)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Collect a day of audit content from the bundled emulator into a folder and show what was
    /// collected (no tenant or AWS account needed).
    Demo {
        /// Output folder.
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
    },
    /// Collect with the lister and fetchers in one process, as configured in a TOML file
    /// (docs/config.md).
    ///
    /// Ctrl-C or SIGTERM stops a pass: nothing new starts, jobs in flight get a few seconds,
    /// and what is left stays open in the ledger for the next run (a second signal exits at
    /// once, just as safely).
    ///
    /// Exit status of `--once`: 0 everything available was collected; 1 something is still
    /// open or failed (listed with reasons; the next run retries it); 2 usage or configuration
    /// error; 3 Microsoft expired content before it could be fetched (data lost upstream;
    /// the content ids are listed; 3 wins over 1); 130 stopped by SIGINT, 143 by SIGTERM
    /// (after printing what is left).
    Run {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// One pass, then exit (default: a pass every `interval_seconds`).
        #[arg(long)]
        once: bool,
    },
    /// Manage the tenants stored in the state table (or a local state file).
    Tenants {
        #[command(subcommand)]
        command: tenants::TenantsCommand,
        #[command(flatten)]
        store: local::StoreArgs,
    },
    /// Where every feed stands: lag, reconciliation, open, failed and lost blobs, lateness.
    ///
    /// From the state alone (no call to Microsoft), per tenant and content type: live-tail lag,
    /// the reconciliation pass, open ledger entries by state and the oldest, failed entries
    /// with their reasons and next retry, blobs Microsoft expired before they could be fetched,
    /// and how late content was listed (p50/p95/max, share over 1 h and 24 h). A state file a
    /// running `run` holds is read from a copy. Exit status 1 when an entry is failed or
    /// expired (docs/config.md, "Status").
    Status(status::StatusArgs),
    /// Send unfinished ledger entries (and the dead-letter queue) to the fetchers again.
    ///
    /// On a deployment (`--table --queue-url`): re-enqueues the matching ledger entries and,
    /// with `--dlq-url`, moves the dead-letter queue's messages back to the fetch queue. On
    /// local state (`--config`, `--state`): reports what the next `run` re-drives (a local run
    /// re-drives every open entry at its start). Exit status 1 when something failed.
    Redrive(redrive::RedriveArgs),
    /// Collect a past range (inside Microsoft's 7 days) of a tenant's content.
    ///
    /// Lists the range in windows of at most an hour and hands new blobs on as the lister
    /// does: with `--config` a local pass then fetches them (exit statuses as `run --once`);
    /// with `--state` they wait in the ledger for the next `run`; with `--table --queue-url`
    /// they go to the deployment's fetch queue. A start more than 7 days less 10 minutes back
    /// is refused (exit status 2).
    Backfill(backfill::BackfillArgs),
    /// Check every tenant's setup (token, consent, certificate, subscriptions, listing, Graph)
    /// and on AWS the table, queues, bucket and newest records; say what to fix. Exit status 1
    /// when a check fails (docs/setup.md, "Doctor").
    Doctor(doctor::DoctorArgs),
    /// Generate an RSA key and a self-signed certificate for the app registration
    /// (`cert.pem` to upload; the key PEM for the collector, optionally in Secrets Manager).
    Keygen(keygen::KeygenArgs),
    /// Normalize a blob or NDJSON (file or stdin) to OCSF NDJSON on stdout, e.g. to rebuild
    /// events from the raw archive after a mapping improves (docs/schema.md).
    Normalize(normalize::NormalizeArgs),
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Serve the emulator of Microsoft's endpoints (token, Management Activity API, Graph).
    Emulate {
        /// Scenario file (TOML, see docs/emulator.md); default: the bundled demo scenario.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Port on 127.0.0.1 (0 = any free port).
        #[arg(long, default_value_t = 8765)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Normalize throughput (MB/s, records/s) against a plain serde_json parse + serialize of
    /// the same bytes, with and without gzip.
    Normalize {
        /// Records in the generated corpus (all five content types).
        #[arg(long, default_value_t = 50_000)]
        records: usize,
        /// Rounds; the best is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Peak RSS and CPU of the collector fetching one blob of each size from the emulator
    /// (docs/benchmarks.md).
    Memory(bench::MemoryArgs),
    /// A local run over an emulated tenant (all five content types, paging, throttling):
    /// blobs/s, records/s, CPU, peak RSS, API calls per blob (docs/benchmarks.md).
    Run(bench::RunArgs),
    /// The lister's tick over many tenants (in-process emulator, counted state store): wall
    /// and CPU time, API requests and state-store calls per tenant per tick, and a projection
    /// of the tick at Microsoft's latency (docs/benchmarks.md).
    ListerScale(bench::ListerScaleArgs),
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("O365_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { out } => {
            // Retries are expected in the demo (its scenario throttles); the summary counts them.
            init_tracing("error");
            demo::run(&out).await
        }
        Command::Run { config, once } => {
            let bar = progress::BarSlot::default();
            progress::init_tracing(&bar);
            run::run(&config, once, &bar).await
        }
        Command::Status(args) => {
            init_tracing("error");
            status::run(&args).await
        }
        Command::Redrive(args) => {
            init_tracing("warn");
            redrive::run(&args).await
        }
        Command::Backfill(args) => {
            let bar = progress::BarSlot::default();
            progress::init_tracing(&bar);
            backfill::run(&args, &bar).await
        }
        Command::Tenants { command, store } => {
            init_tracing("warn");
            tenants::run(command, &store).await
        }
        Command::Doctor(args) => {
            init_tracing("error");
            doctor::run(&args).await
        }
        Command::Keygen(args) => {
            init_tracing("warn");
            keygen::run(&args).await
        }
        Command::Normalize(args) => {
            init_tracing("warn");
            normalize::run(&args)
        }
        Command::Bench {
            what: BenchCommand::Normalize { records, rounds },
        } => {
            init_tracing("warn");
            normalize::bench(records, rounds)
        }
        Command::Bench {
            what: BenchCommand::Memory(args),
        } => {
            init_tracing("warn");
            bench::memory(&args).await
        }
        Command::Bench {
            what: BenchCommand::Run(args),
        } => {
            init_tracing("warn");
            bench::run(&args).await
        }
        Command::Bench {
            what: BenchCommand::ListerScale(args),
        } => {
            init_tracing("error");
            bench::lister_scale(&args).await
        }
        Command::Emulate {
            scenario,
            port,
            host,
        } => {
            init_tracing("info");
            emulate(scenario, SocketAddr::new(host, port)).await
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(run::EXIT_USAGE)
        }
    }
}

async fn emulate(path: Option<PathBuf>, addr: SocketAddr) -> Result<ExitCode, String> {
    let scenario = match &path {
        Some(p) => o365_emulator::Scenario::from_file(p),
        None => o365_emulator::Scenario::demo(),
    }
    .map_err(|e| e.to_string())?;
    let tenants: Vec<String> = scenario
        .tenants
        .iter()
        .map(|t| format!("{} ({})", t.id, t.cloud.slug()))
        .collect();
    let emu = o365_emulator::Emulator::start_on(scenario, addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("emulator listening on {}", emu.base_url());
    println!("  tenants: {}", tenants.join(", "));
    for cloud in o365_emulator::Cloud::ALL {
        println!("  {:<10} {}", cloud.slug(), emu.cloud_url(cloud));
    }
    println!(
        "  ground truth: {0}/_emulator/truth   request log: {0}/_emulator/requests",
        emu.base_url()
    );
    println!("press Ctrl-C to stop");
    emu.serve_until_ctrl_c().await;
    Ok(ExitCode::SUCCESS)
}
