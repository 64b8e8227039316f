//! `doctor`: checks every tenant (token, consent, certificate, subscriptions, listing, Graph) and
//! on AWS the deployment's table, queues, bucket and newest records; prints what to fix.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use shared::api::http_client;
use shared::app::SystemClock;
use shared::app::clients::TenantClients;
use shared::app::doctor::aws::AwsDeployment;
use shared::app::doctor::{Deployment, Doctor, DoctorReport, HttpGraph, Status};
use shared::config::LocalConfig;
use shared::model::{Tenant, TenantId};
use shared::retry::RetryPolicy;
use shared::secrets::AwsSecrets;
use shared::store::{DynamoDbStore, RedbStore, StateStore};

/// Options of `doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Check this tenant only (its GUID).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print the report as JSON (for scripts) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Tenants from a local run configuration (`run --config`); no AWS checks.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Tenants from a local state file (redb); no AWS checks.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The deployment's state table (stack output StateTableName): tenants come from it, and
    /// it is checked.
    #[arg(long, env = "STATE_TABLE")]
    pub table: Option<String>,
    /// The fetch queue (stack output FetchQueueUrl): reachable, depth.
    #[arg(long, env = "QUEUE_URL")]
    pub queue_url: Option<String>,
    /// The dead-letter queue (stack output FetchDeadLetterQueueUrl): must be empty.
    #[arg(long, env = "DLQ_URL")]
    pub dlq_url: Option<String>,
    /// The events bucket (stack output EventsBucketName): reachable, age of the newest
    /// records per tenant and content type.
    #[arg(long, env = "BUCKET")]
    pub bucket: Option<String>,
    /// A local AWS endpoint (e.g. moto) instead of AWS.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
}

/// Retries for doctor's calls: enough to ride out a throttle, short enough to answer soon.
fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(300),
        max_delay: Duration::from_secs(5),
        deadline: None,
    }
}

fn blank(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

async fn load_tenants(
    args: &DoctorArgs,
    ddb: aws_sdk_dynamodb::Client,
) -> Result<Vec<Tenant>, String> {
    if let Some(path) = &args.config {
        let cfg = LocalConfig::from_file(path).map_err(|e| e.to_string())?;
        return Ok(cfg.tenants);
    }
    if let Some(path) = &args.state {
        if !path.exists() {
            return Err(format!(
                "state file {} does not exist: give the `state` of your run configuration",
                path.display()
            ));
        }
        let store = RedbStore::open(path).await.map_err(|e| e.to_string())?;
        return store.list_tenants().await.map_err(|e| e.to_string());
    }
    if let Some(table) = blank(&args.table) {
        let store = DynamoDbStore::new(ddb, table);
        return store.list_tenants().await.map_err(|e| e.to_string());
    }
    Err("give --config FILE (a local run configuration), --state FILE (a local state file) or --table NAME (a deployment's StateTableName, or STATE_TABLE)".into())
}

/// `o365-collector doctor`.
pub async fn run(args: &DoctorArgs) -> Result<ExitCode, String> {
    let endpoint = blank(&args.aws_endpoint_url);
    let conf = shared::aws::sdk_config(endpoint.as_deref()).await;
    let mut tenants = load_tenants(args, aws_sdk_dynamodb::Client::new(&conf)).await?;
    if let Some(id) = &args.tenant {
        let id = TenantId::parse(id).map_err(|e| e.to_string())?;
        tenants.retain(|t| t.id == id);
        if tenants.is_empty() {
            return Err(format!("tenant {id} is not configured"));
        }
        // Named explicitly: checked even when disabled.
        for t in &mut tenants {
            t.enabled = true;
        }
    }
    if tenants.is_empty() {
        return Err("no tenants configured: add one (`o365-collector tenants add`, or a [[tenant]] in the configuration)".into());
    }
    let secrets = AwsSecrets::new(aws_sdk_secretsmanager::Client::new(&conf));
    let clients = TenantClients::new(http_client(), secrets, retry());
    let graph = HttpGraph::new(http_client());
    let clock = SystemClock;
    let doctor = Doctor::new(&clients, &graph, &clock);
    let local = args.config.is_some() || args.state.is_some();
    let names = Deployment {
        table: blank(&args.table),
        queue_url: blank(&args.queue_url),
        dlq_url: blank(&args.dlq_url),
        bucket: blank(&args.bucket),
    };
    let report = if local || names == Deployment::default() {
        doctor.run(&tenants).await
    } else {
        let s3 = shared::aws::s3_client(&conf, endpoint.is_some());
        let probe = AwsDeployment::new(&conf, s3);
        doctor.with_deployment(&probe, names).run(&tenants).await
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print_table(&report);
    }
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The report for people: one row per check, its fix on the line below.
pub fn print_table(report: &DoctorReport) {
    let rows: Vec<(String, &shared::app::doctor::Check)> = report
        .checks()
        .map(|(t, c)| (t.unwrap_or("aws").to_owned(), c))
        .collect();
    let tw = rows.iter().map(|(t, _)| t.len()).max().unwrap_or(6).max(6);
    let cw = rows
        .iter()
        .map(|(_, c)| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<tw$}  {:<cw$}  {:<7}  detail",
        "tenant", "check", "status"
    );
    for (tenant, c) in &rows {
        let status = match c.status {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skipped => "skipped",
        };
        println!("{tenant:<tw$}  {:<cw$}  {status:<7}  {}", c.name, c.detail);
        if let Some(fix) = &c.fix
            && matches!(c.status, Status::Warn | Status::Fail)
        {
            println!("{:<tw$}  {:<cw$}  {:<7}  fix: {fix}", "", "", "");
        }
    }
    let s = report.summary;
    println!(
        "{} ok, {} warn, {} fail, {} skipped{}",
        s.ok,
        s.warn,
        s.fail,
        s.skipped,
        if s.fail > 0 {
            ": fix the FAIL rows, then run doctor again"
        } else {
            ""
        }
    );
}
