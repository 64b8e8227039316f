//! `bench memory` and `bench run` through the (debug) CLI binary: a functional check that they
//! start the emulator and a measured collection in their own processes and print their tables
//! with plausible figures. No timing is asserted (debug figures mean nothing).

use integration_tests::runtime::function_binary;

async fn bench(args: &'static [&'static str]) -> String {
    let bin = function_binary("o365-collector");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .arg("bench")
            .args(args)
            .output()
            .expect("run the CLI")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The whitespace-separated numbers of a line, in order.
fn numbers(line: &str) -> Vec<f64> {
    line.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// The first number after `label` on the line that starts with it.
fn value(stdout: &str, label: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line:\n{stdout}"));
    numbers(&line.trim_start()[label.len()..])
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no number on `{line}`"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_memory_prints_peak_rss_of_a_one_megabyte_blob() {
    let stdout = bench(&["memory", "--sizes", "1"]).await;
    // blob  bytes  records  peak RSS MiB  CPU s  wall s  ratio
    let baseline = stdout
        .lines()
        .find(|l| l.starts_with("baseline"))
        .unwrap_or_else(|| panic!("no baseline row:\n{stdout}"));
    let b = numbers(baseline);
    assert!(b.len() >= 5 && b[1] > 0.0 && b[2] > 0.0, "{baseline}");
    let row = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("MB"))
        .unwrap_or_else(|| panic!("no 1 MB row:\n{stdout}"));
    // "1.0 MB <bytes> <records> <rss> <cpu> <wall> <ratio>"
    let n = numbers(row);
    assert!(n.len() >= 7, "{row}");
    let (mb, bytes, records, rss) = (n[0], n[1], n[2], n[3]);
    assert!((0.5..2.0).contains(&mb), "blob of {mb} MB: {row}");
    assert!(bytes > 500_000.0, "{row}");
    assert!(records > b[1], "{row}");
    assert!(rss > 0.0, "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_run_prints_throughput_and_api_calls_per_blob() {
    let stdout = bench(&["run", "--records-per-hour", "50", "--hours", "1"]).await;
    let blobs = value(&stdout, "blobs ");
    let records = value(&stdout, "records ");
    assert!(blobs >= 5.0, "{stdout}");
    // 50 records of each of five types, some of them repeated across blobs.
    assert!(records >= 250.0, "{stdout}");
    assert!(value(&stdout, "records/s") > 0.0, "{stdout}");
    assert!(value(&stdout, "peak RSS MiB") > 0.0, "{stdout}");
    assert!(value(&stdout, "API calls per blob") >= 1.0, "{stdout}");
    assert!(value(&stdout, "blob GETs per blob") >= 1.0, "{stdout}");
}
