//! `normalize [FILE]`: re-normalize a blob or NDJSON to OCSF NDJSON on stdout (to rebuild the
//! events of an archive after a mapping improves); `bench normalize`: throughput figures.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use shared::model::ContentType;
use shared::normalize::{self, Context};

/// Options of `normalize`.
#[derive(Debug, clap::Args)]
pub struct NormalizeArgs {
    /// A blob (JSON array), NDJSON, or a raw archive object (`.json.gz`); stdin when absent.
    pub file: Option<PathBuf>,
    /// Tenant id (default: taken from a `raw/tenant_id=…/` path, else each record's OrganizationId).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Content type (default: from the path, else from each record's workload).
    #[arg(long)]
    pub content_type: Option<String>,
    /// Content id (default: from the path's file name).
    #[arg(long)]
    pub content_id: Option<String>,
    /// The blob's contentCreated, RFC 3339 (default: the path's date, else now).
    #[arg(long)]
    pub content_created: Option<String>,
}

/// What a raw archive key says about its blob.
#[derive(Debug, Default)]
struct FromPath {
    tenant: Option<String>,
    content_type: Option<ContentType>,
    content_id: Option<String>,
    date: Option<NaiveDate>,
}

fn from_path(path: &Path) -> FromPath {
    let mut out = FromPath::default();
    for part in path.iter().filter_map(|p| p.to_str()) {
        if let Some(v) = part.strip_prefix("tenant_id=") {
            out.tenant = Some(v.to_owned());
        } else if let Some(v) = part.strip_prefix("content_type=") {
            out.content_type = v.parse().ok();
        } else if let Some(v) = part.strip_prefix("date=") {
            out.date = NaiveDate::parse_from_str(v, "%Y-%m-%d").ok();
        }
    }
    if let Some(name) = path.file_name().and_then(|n| n.to_str())
        && let Some(stem) = name.strip_suffix(".json.gz")
    {
        out.content_id = url::form_urlencoded::parse(format!("x={stem}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned());
    }
    out
}

/// The content type a record most likely came in, from its workload and operation.
fn guess_content_type(record: &serde_json::Value) -> ContentType {
    let op = record["Operation"].as_str().unwrap_or("");
    if op.starts_with("Dlp") {
        return ContentType::DlpAll;
    }
    match record["Workload"].as_str().unwrap_or("") {
        "AzureActiveDirectory" => ContentType::AzureActiveDirectory,
        "Exchange" => ContentType::Exchange,
        "SharePoint" | "OneDrive" => ContentType::SharePoint,
        _ => ContentType::General,
    }
}

fn read_input(file: Option<&Path>) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    match file {
        Some(p) => {
            std::fs::File::open(p)
                .and_then(|mut f| f.read_to_end(&mut raw))
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut raw)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
        }
    }
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| format!("input is not valid gzip: {e}"))?;
        raw = out;
    }
    Ok(raw)
}

/// `o365-collector normalize [FILE]`.
pub fn run(args: &NormalizeArgs) -> Result<ExitCode, String> {
    let raw = read_input(args.file.as_deref())?;
    let hints = args.file.as_deref().map(from_path).unwrap_or_default();
    let content_type = match &args.content_type {
        Some(c) => Some(c.parse::<ContentType>().map_err(|e| e.to_string())?),
        None => hints.content_type,
    };
    let content_created: DateTime<Utc> = match &args.content_created {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map_err(|e| format!("--content-created `{t}` is not RFC 3339: {e}"))?
            .with_timezone(&Utc),
        None => hints
            .date
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or_else(Utc::now, |d| d.and_utc()),
    };
    let tenant = args.tenant.clone().or(hints.tenant);
    let content_id = args
        .content_id
        .clone()
        .or(hints.content_id)
        .unwrap_or_default();
    let received_at = Utc::now();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut emit = |record: Result<serde_json::Value, (String, String)>| -> Result<(), String> {
        let ct = match (&record, content_type) {
            (_, Some(ct)) => ct,
            (Ok(r), None) => guess_content_type(r),
            (Err(_), None) => ContentType::General,
        };
        let org = record
            .as_ref()
            .ok()
            .and_then(|r| r["OrganizationId"].as_str().map(str::to_owned));
        let tenant_id = tenant.clone().or(org).unwrap_or_default();
        let ctx = Context {
            tenant_id: &tenant_id,
            content_type: ct,
            content_id: &content_id,
            content_created,
            received_at,
        };
        let n = match record {
            Ok(r) => normalize::normalize(r, &ctx),
            Err((line, error)) => normalize::normalize_unparsable(&line, &error, &ctx),
        };
        serde_json::to_writer(&mut out, &n.event).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())
    };
    let text = String::from_utf8_lossy(&raw);
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<serde_json::Value>>(trimmed) {
            Ok(records) => {
                for r in records {
                    emit(Ok(r))?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => {
                // Not a whole JSON array: keep it as one unparsable record, never lose it.
                emit(Err((
                    trimmed.to_owned(),
                    format!("not a JSON array of records: {e}"),
                )))?;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(r) => emit(Ok(r))?,
            Err(e) => emit(Err((line.to_owned(), e.to_string())))?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A corpus of every workload, as blobs: JSON arrays of records.
fn corpus(records: usize) -> Vec<(ContentType, Vec<u8>)> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let users = o365_emulator::data::make_users(&mut rng, "contoso.onmicrosoft.com", 50);
    let tenant = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";
    let per_type = records / ContentType::ALL.len();
    let mut out = Vec::new();
    for ct in ContentType::ALL {
        let mut blob = Vec::with_capacity(per_type);
        for i in 0..per_type {
            let ctx = o365_emulator::data::RecordContext {
                tenant_id: tenant,
                tenant_domain: "contoso.onmicrosoft.com",
                users: &users,
                creation_time: Utc::now() - chrono::Duration::seconds(i as i64),
                id: uuid::Builder::from_random_bytes(rand::Rng::random(&mut rng)).into_uuid(),
            };
            blob.push(o365_emulator::data::make_record(
                &mut rng,
                ct.as_str(),
                &ctx,
            ));
        }
        // Blobs of 100 records, as the service sends them.
        for chunk in blob.chunks(100) {
            out.push((ct, serde_json::to_vec(chunk).unwrap_or_default()));
        }
    }
    out
}

fn sink(gzip: bool) -> Box<dyn Write> {
    if gzip {
        Box::new(GzEncoder::new(std::io::sink(), Compression::default()))
    } else {
        Box::new(std::io::sink())
    }
}

/// `o365-collector bench normalize`: normalize throughput against a plain serde_json
/// parse + serialize of the same bytes, with and without gzip.
pub fn bench(records: usize, rounds: usize) -> Result<ExitCode, String> {
    let blobs = corpus(records);
    let bytes: usize = blobs.iter().map(|(_, b)| b.len()).sum();
    let count: usize = records / ContentType::ALL.len() * ContentType::ALL.len();
    println!(
        "corpus: {count} records of all five content types, {:.1} MB as JSON, {} blobs",
        bytes as f64 / 1e6,
        blobs.len()
    );
    let now = Utc::now();
    let mut results = Vec::new();
    for gzip in [false, true] {
        let mut best_ref = f64::MAX;
        let mut best_norm = f64::MAX;
        for _ in 0..rounds.max(1) {
            // Reference: parse the blob, serialize each record as a line.
            let t = Instant::now();
            let mut w = sink(gzip);
            for (_, blob) in &blobs {
                let records: Vec<serde_json::Value> =
                    serde_json::from_slice(blob).map_err(|e| e.to_string())?;
                for r in &records {
                    serde_json::to_writer(&mut w, r).map_err(|e| e.to_string())?;
                    w.write_all(b"\n").map_err(|e| e.to_string())?;
                }
            }
            w.flush().map_err(|e| e.to_string())?;
            drop(w);
            best_ref = best_ref.min(t.elapsed().as_secs_f64());

            // The collector's path: parse, normalize to OCSF, serialize.
            let t = Instant::now();
            let mut w = sink(gzip);
            for (ct, blob) in &blobs {
                let records: Vec<serde_json::Value> =
                    serde_json::from_slice(blob).map_err(|e| e.to_string())?;
                let ctx = Context {
                    tenant_id: "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d",
                    content_type: *ct,
                    content_id: "bench",
                    content_created: now,
                    received_at: now,
                };
                for r in records {
                    let n = normalize::normalize(r, &ctx);
                    serde_json::to_writer(&mut w, &n.event).map_err(|e| e.to_string())?;
                    w.write_all(b"\n").map_err(|e| e.to_string())?;
                }
            }
            w.flush().map_err(|e| e.to_string())?;
            drop(w);
            best_norm = best_norm.min(t.elapsed().as_secs_f64());
        }
        results.push((gzip, best_ref, best_norm));
    }
    println!(
        "{:<10} {:>22} {:>22} {:>8}",
        "gzip", "serde_json reference", "normalize to OCSF", "ratio"
    );
    for (gzip, r, n) in &results {
        let fmt = |secs: f64| {
            format!(
                "{:>7.1} MB/s {:>7.0}k rec/s",
                bytes as f64 / 1e6 / secs,
                count as f64 / secs / 1e3
            )
        };
        println!(
            "{:<10} {:>22} {:>22} {:>7.0}%",
            if *gzip { "on" } else { "off" },
            fmt(*r),
            fmt(*n),
            r / n * 100.0
        );
    }
    if let Some((_, r, n)) = results.iter().find(|(g, _, _)| *g) {
        let ratio = r / n;
        println!(
            "target: normalize >= 50% of the reference with gzip on: {} ({:.0}%)",
            if ratio >= 0.5 { "met" } else { "NOT met" },
            ratio * 100.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
