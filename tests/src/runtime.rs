//! A Lambda Runtime API emulator: runs a built function binary (the same `bootstrap` Lambda
//! runs) as a child process and feeds it invocations over the Runtime API
//! (`/2018-06-01/runtime/invocation/next`, `…/{id}/response`, `…/{id}/error`, `…/init/error`).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Notify, oneshot};

/// The path of a built function binary (`cargo build --bins` puts it in `target/debug`).
///
/// # Panics
/// When the binary has not been built, with the command that builds it.
pub fn function_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "function binary {} is missing: run `cargo build --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The best build of a function binary and what it is: the release `bootstrap` of
/// `cargo lambda build` (`target/lambda/<name>/bootstrap`), else `target/release/<name>`, else
/// `target/debug/<name>`; `None` when none is built.
pub fn preferred_binary(name: &str) -> Option<(PathBuf, &'static str)> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    [
        (
            target.join("lambda").join(name).join("bootstrap"),
            "release bootstrap (cargo lambda)",
        ),
        (target.join("release").join(name), "release"),
        (target.join("debug").join(name), "debug"),
    ]
    .into_iter()
    .find(|(p, _)| p.exists())
}

struct Invocation {
    id: String,
    event: Value,
    deadline_ms: i64,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<VecDeque<Invocation>>,
    arrived: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Result<Value, Value>>>>,
    init_error: Mutex<Option<Value>>,
    polls: std::sync::atomic::AtomicU64,
}

/// What an invocation returned.
#[derive(Debug)]
pub enum InvokeError {
    /// The function reported an error (`…/error`): its body.
    Function(Value),
    /// The function failed to initialize (`…/init/error`), or exited.
    Init(String),
    /// No answer in time.
    Timeout,
}

/// A function process attached to its own Runtime API.
pub struct LambdaProcess {
    name: String,
    shared: Arc<Shared>,
    child: tokio::process::Child,
    logs: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<String>>>,
    shutdown: Option<oneshot::Sender<()>>,
    /// Time from spawn to the first `invocation/next` poll (the function's init time).
    pub init_time: Option<Duration>,
}

impl std::fmt::Debug for LambdaProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaProcess")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    s.polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    loop {
        let notified = s.arrived.notified();
        let item = s.pending.lock().expect("lock").pop_front();
        if let Some(inv) = item {
            let mut r = (StatusCode::OK, inv.event.to_string()).into_response();
            let h = r.headers_mut();
            let put = |h: &mut HeaderMap, k: &'static str, v: String| {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            };
            put(h, "lambda-runtime-aws-request-id", inv.id.clone());
            put(h, "lambda-runtime-deadline-ms", inv.deadline_ms.to_string());
            put(
                h,
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:test".into(),
            );
            put(h, "lambda-runtime-trace-id", format!("Root=1-{}", inv.id));
            put(h, "content-type", "application/json".into());
            return r;
        }
        notified.await;
    }
}

async fn respond(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(tx) = s.waiting.lock().expect("lock").remove(&id) {
        let _ = tx.send(Ok(v));
    }
    StatusCode::ACCEPTED
}

async fn error(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(tx) = s.waiting.lock().expect("lock").remove(&id) {
        let _ = tx.send(Err(v));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *s.init_error.lock().expect("lock") = Some(v);
    StatusCode::ACCEPTED
}

impl LambdaProcess {
    /// Starts `binary` with `env` (plus `AWS_LAMBDA_RUNTIME_API` and the usual Lambda
    /// variables) and waits until it polls for its first invocation (or fails to init).
    pub async fn spawn(name: &str, env: &[(String, String)]) -> LambdaProcess {
        LambdaProcess::spawn_binary(name, &function_binary(name), env).await
    }

    /// [`LambdaProcess::spawn`] of a given binary, e.g. a release `bootstrap` built by
    /// `cargo lambda build` (benchmarks).
    pub async fn spawn_binary(
        name: &str,
        binary: &Path,
        env: &[(String, String)],
    ) -> LambdaProcess {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime api");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        let started = std::time::Instant::now();
        let mut cmd = tokio::process::Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn function binary");
        let logs = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        for (stream, is_stdout) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
                true,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
                false,
            ),
        ] {
            let Some(stream) = stream else { continue };
            let logs = logs.clone();
            let stdout = stdout.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut l = logs.lock().expect("lock");
                    l.push_str(&line);
                    l.push('\n');
                    if is_stdout {
                        stdout.lock().expect("lock").push(line);
                    }
                }
            });
        }
        let mut p = LambdaProcess {
            name: name.to_owned(),
            shared,
            child,
            logs,
            stdout,
            shutdown: Some(tx),
            init_time: None,
        };
        let wait_until = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < wait_until {
            if p.shared.polls.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                p.init_time = Some(started.elapsed());
                break;
            }
            if p.shared.init_error.lock().expect("lock").is_some() {
                break;
            }
            if let Ok(Some(_)) = p.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        p
    }

    /// Peak resident memory of the process so far, in KiB (`VmHWM`; Linux only).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// CPU time (user + system) the process has used so far, in seconds (`/proc/<pid>/stat`
    /// fields 14 and 15, at the kernel's 100 ticks a second; Linux only).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.id()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces: count from the closing parenthesis.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / 100.0)
    }

    /// The init error the function reported, if any.
    pub fn init_error(&self) -> Option<Value> {
        self.shared.init_error.lock().expect("lock").clone()
    }

    /// Everything the process printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("lock").clone()
    }

    /// The lines the process wrote to stdout so far (where Lambda functions write EMF metric
    /// lines; the JSON logs go to stderr). Both streams are also in [`LambdaProcess::logs`].
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("lock").clone()
    }

    /// Sends one event; waits for the function's response.
    pub async fn invoke(&mut self, event: Value, timeout: Duration) -> Result<Value, InvokeError> {
        if let Some(e) = self.init_error() {
            return Err(InvokeError::Init(e.to_string()));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .expect("lock")
            .insert(id.clone(), tx);
        let deadline_ms = chrono::Utc::now().timestamp_millis()
            + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2);
        self.shared
            .pending
            .lock()
            .expect("lock")
            .push_back(Invocation {
                id,
                event,
                deadline_ms,
            });
        self.shared.arrived.notify_waiters();
        self.shared.arrived.notify_one();
        tokio::select! {
            r = rx => match r {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(v)) => Err(InvokeError::Function(v)),
                Err(_) => Err(InvokeError::Init("the runtime API stopped".into())),
            },
            status = self.child.wait() => Err(InvokeError::Init(format!(
                "{} exited ({status:?}):\n{}", self.name, self.logs()))),
            () = tokio::time::sleep(timeout + Duration::from_secs(5)) => Err(InvokeError::Timeout),
        }
    }

    /// Kills the process at once (a crash at an arbitrary point, for crash tests).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
