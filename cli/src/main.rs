//! `o365-collector`: the operator CLI — local runs, the demo, tenants, the emulator.

mod bench;
mod demo;
mod doctor;
mod keygen;
mod local;
mod normalize;
mod progress;
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
            local::run(&config, once, &bar).await
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
            ExitCode::from(2)
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
