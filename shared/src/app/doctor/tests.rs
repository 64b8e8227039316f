use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::api::{BlobBody, CallInfo, Operation, Subscription};
use crate::app::testkit::{FixedClock, tenant};
use crate::auth::aadsts_fix;
use crate::model::ContentBlob;

fn jwt(claims: serde_json::Value) -> String {
    let enc = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(&serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        enc(&claims)
    )
}

fn token(roles: &[&str]) -> AccessToken {
    let claims = if roles.is_empty() {
        serde_json::json!({"aud": "https://manage.office.com", "tid": "t"})
    } else {
        serde_json::json!({"aud": "https://manage.office.com", "tid": "t", "roles": roles})
    };
    AccessToken::new(jwt(claims), Utc::now() + Duration::hours(1))
}

fn aadsts(code: u32) -> AuthError {
    AuthError::Aadsts {
        tenant: "t".into(),
        client_id: "c".into(),
        status: 401,
        code,
        error: "invalid_client".into(),
        description: format!("AADSTS{code}: refused."),
        fix: aadsts_fix(code),
        thumbprint: None,
    }
}

struct FakeTokens {
    manage: Result<AccessToken, AuthError>,
    graph: Result<AccessToken, AuthError>,
    info: CredentialInfo,
}

impl FakeTokens {
    fn healthy() -> FakeTokens {
        FakeTokens {
            manage: Ok(token(&[ACTIVITY_FEED_READ, ACTIVITY_FEED_READ_DLP])),
            graph: Ok(token(&[USER_READ_ALL])),
            info: CredentialInfo::Secret,
        }
    }
}

impl TokenSource for FakeTokens {
    async fn token(&self, audience: Audience) -> Result<AccessToken, AuthError> {
        match audience {
            Audience::Manage => self.manage.clone(),
            Audience::Graph => self.graph.clone(),
        }
    }
    fn credential_info(&self) -> CredentialInfo {
        self.info.clone()
    }
}

#[derive(Default)]
struct FakeApi {
    /// Pre-existing subscriptions: content type → `enabled` / `disabled`.
    subs: Mutex<BTreeMap<String, String>>,
    audit_off: bool,
    starts: Mutex<Vec<ContentType>>,
    listed: Mutex<Vec<ContentType>>,
}

fn call(op: Operation, ct: Option<ContentType>) -> Box<CallInfo> {
    Box::new(CallInfo {
        tenant: crate::app::testkit::TENANT.into(),
        operation: op,
        content_type: ct,
        content_id: None,
    })
}

impl ActivityApi for FakeApi {
    async fn list_content(
        &self,
        ct: ContentType,
        _w: &Window,
    ) -> Result<Vec<ContentBlob>, ApiError> {
        self.listed.lock().unwrap().push(ct);
        match self
            .subs
            .lock()
            .unwrap()
            .get(ct.as_str())
            .map(String::as_str)
        {
            Some("enabled") => Ok(Vec::new()),
            Some(_) => Err(ApiError::Service {
                call: call(Operation::ListContent, Some(ct)),
                status: 400,
                code: "AF20023".into(),
                message: "The subscription was disabled by a tenant admin.".into(),
                server_date: None,
            }),
            None => Err(ApiError::Service {
                call: call(Operation::ListContent, Some(ct)),
                status: 400,
                code: "AF20022".into(),
                message: "No subscription found for the specified content type.".into(),
                server_date: None,
            }),
        }
    }
    async fn fetch_blob(&self, _uri: &str) -> Result<BlobBody, ApiError> {
        unreachable!("doctor fetches no blob")
    }
    async fn start_subscription(&self, ct: ContentType) -> Result<StartOutcome, ApiError> {
        self.starts.lock().unwrap().push(ct);
        if self.audit_off {
            return Err(ApiError::AuditDisabled {
                call: call(Operation::StartSubscription, Some(ct)),
                detail: "DataServiceException: Tenant does not exist.".into(),
            });
        }
        self.subs
            .lock()
            .unwrap()
            .insert(ct.as_str().into(), "enabled".into());
        Ok(StartOutcome::Started)
    }
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, ApiError> {
        Ok(self
            .subs
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| Subscription {
                content_type: k.clone(),
                status: Some(v.clone()),
            })
            .collect())
    }
}

struct Fake {
    api: Arc<FakeApi>,
    tokens: Arc<FakeTokens>,
}

impl TenantConnector for Fake {
    type Api = FakeApi;
    type Tokens = FakeTokens;
    async fn connect(&self, _t: &Tenant) -> Result<Connection<FakeApi, FakeTokens>, SetupError> {
        Ok((self.api.clone(), self.tokens.clone()))
    }
}

struct FakeGraph(GraphAnswer);

impl GraphProbe for FakeGraph {
    async fn list_users(&self, _t: &Tenant, _token: &AccessToken) -> GraphAnswer {
        self.0.clone()
    }
}

fn all_enabled() -> FakeApi {
    let api = FakeApi::default();
    for ct in ContentType::ALL {
        api.subs
            .lock()
            .unwrap()
            .insert(ct.as_str().into(), "enabled".into());
    }
    api
}

async fn diagnose(
    api: FakeApi,
    tokens: FakeTokens,
    graph: GraphAnswer,
) -> (DoctorReport, Arc<FakeApi>) {
    let api = Arc::new(api);
    let fake = Fake {
        api: api.clone(),
        tokens: Arc::new(tokens),
    };
    let graph = FakeGraph(graph);
    let clock = FixedClock::at(Utc::now());
    let report = Doctor::new(&fake, &graph, &clock)
        .run(&[tenant(ContentType::ALL.to_vec())])
        .await;
    (report, api)
}

fn check<'r>(r: &'r DoctorReport, name: &str) -> &'r Check {
    r.tenants[0]
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {:#?}", r.tenants[0].checks))
}

#[tokio::test]
async fn a_healthy_tenant_is_all_ok() {
    let (r, api) = diagnose(all_enabled(), FakeTokens::healthy(), GraphAnswer::Users(1)).await;
    for c in &r.tenants[0].checks {
        assert!(
            matches!(c.status, Status::Ok)
                || (c.name == "certificate" && c.status == Status::Skipped),
            "{c:?}"
        );
    }
    assert!(!r.failed());
    assert_eq!(r.summary.fail, 0);
    assert_eq!(api.listed.lock().unwrap().len(), 5);
    assert!(api.starts.lock().unwrap().is_empty(), "nothing to start");
    let names: Vec<&str> = r.tenants[0]
        .checks
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    for n in [
        "credential",
        "token.manage",
        "roles.manage",
        "subscription.Audit.Exchange",
        "listing.DLP.All",
        "token.graph",
        "roles.graph",
        "graph.users",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
}

#[tokio::test]
async fn no_consent_names_activity_feed_read_and_skips_the_calls() {
    let tokens = FakeTokens {
        manage: Ok(token(&[])),
        graph: Ok(token(&[])),
        info: CredentialInfo::Secret,
    };
    let (r, api) = diagnose(
        all_enabled(),
        tokens,
        GraphAnswer::Refused {
            status: 403,
            code: Some("Authorization_RequestDenied".into()),
            message: "Insufficient privileges to complete the operation.".into(),
        },
    )
    .await;
    let roles = check(&r, "roles.manage");
    assert_eq!(roles.status, Status::Fail);
    let fix = roles.fix.as_deref().unwrap();
    assert!(
        fix.contains("ActivityFeed.Read") && fix.contains("admin consent"),
        "{fix}"
    );
    assert!(fix.contains("Office 365 Management APIs"), "{fix}");
    assert!(roles.detail.contains("no roles"), "{}", roles.detail);
    assert_eq!(
        check(&r, "subscription.Audit.General").status,
        Status::Skipped
    );
    assert_eq!(check(&r, "listing.Audit.General").status, Status::Skipped);
    assert!(api.starts.lock().unwrap().is_empty() && api.listed.lock().unwrap().is_empty());
    let users = check(&r, "graph.users");
    assert_eq!(users.status, Status::Fail);
    assert!(users.fix.as_deref().unwrap().contains("User.Read.All"));
    assert_eq!(check(&r, "roles.graph").status, Status::Fail);
    assert!(r.failed());
}

#[tokio::test]
async fn a_refused_token_gives_the_aadsts_fix_once_and_skips_what_depends_on_it() {
    let tokens = FakeTokens {
        manage: Err(aadsts(7000215)),
        graph: Err(aadsts(7000215)),
        info: CredentialInfo::Secret,
    };
    let (r, api) = diagnose(all_enabled(), tokens, GraphAnswer::Users(1)).await;
    let t = check(&r, "token.manage");
    assert_eq!(t.status, Status::Fail);
    assert_eq!(t.code.as_deref(), Some("AADSTS7000215"));
    assert!(t.detail.contains("AADSTS7000215"), "{}", t.detail);
    assert!(t.fix.as_deref().unwrap().contains("VALUE"));
    for n in [
        "roles.manage",
        "subscription.Audit.Exchange",
        "listing.Audit.Exchange",
    ] {
        let c = check(&r, n);
        assert_eq!(c.status, Status::Skipped, "{n}");
        assert!(c.detail.contains("token failed"), "{n}: {}", c.detail);
    }
    assert_eq!(check(&r, "token.graph").status, Status::Skipped);
    assert_eq!(check(&r, "graph.users").status, Status::Skipped);
    assert_eq!(r.summary.fail, 1, "one refusal, one failure");
    assert!(api.listed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn wrong_cloud_fix_names_the_cloud_setting_and_the_configured_one() {
    let tokens = FakeTokens {
        manage: Err(aadsts(90002)),
        graph: Err(aadsts(90002)),
        info: CredentialInfo::Secret,
    };
    let (r, _) = diagnose(all_enabled(), tokens, GraphAnswer::Users(1)).await;
    let fix = check(&r, "token.manage").fix.clone().unwrap();
    assert!(fix.contains("set cloud = gcc-high"), "{fix}");
    assert!(
        fix.contains("now: cloud = commercial, login host https://login.microsoftonline.com"),
        "{fix}"
    );
}

#[tokio::test]
async fn a_graph_only_refusal_is_reported_on_its_own() {
    let tokens = FakeTokens {
        graph: Err(aadsts(500011)),
        ..FakeTokens::healthy()
    };
    let (r, _) = diagnose(all_enabled(), tokens, GraphAnswer::Users(1)).await;
    assert_eq!(check(&r, "token.manage").status, Status::Ok);
    let g = check(&r, "token.graph");
    assert_eq!(
        (g.status, g.code.as_deref()),
        (Status::Fail, Some("AADSTS500011"))
    );
    assert_eq!(check(&r, "graph.users").status, Status::Skipped);
}

#[tokio::test]
async fn a_disabled_subscription_is_reported_started_and_then_listed() {
    let api = all_enabled();
    api.subs
        .lock()
        .unwrap()
        .insert("Audit.Exchange".into(), "disabled".into());
    api.subs.lock().unwrap().remove("Audit.General");
    let (r, api) = diagnose(api, FakeTokens::healthy(), GraphAnswer::Users(1)).await;
    let s = check(&r, "subscription.Audit.Exchange");
    assert_eq!(s.status, Status::Warn);
    assert!(
        s.detail.contains("disabled") && s.detail.contains("started it again"),
        "{}",
        s.detail
    );
    assert_eq!(check(&r, "listing.Audit.Exchange").status, Status::Ok);
    let g = check(&r, "subscription.Audit.General");
    assert_eq!(g.status, Status::Ok);
    assert!(g.detail.contains("started now"), "{}", g.detail);
    assert_eq!(
        *api.starts.lock().unwrap(),
        [ContentType::Exchange, ContentType::General]
    );
    assert!(!r.failed(), "repaired: warnings only");
}

#[tokio::test]
async fn audit_log_off_fails_with_the_purview_fix_and_is_asked_once() {
    let api = FakeApi {
        audit_off: true,
        ..FakeApi::default()
    };
    let (r, api) = diagnose(api, FakeTokens::healthy(), GraphAnswer::Users(1)).await;
    for ct in ContentType::ALL {
        let s = check(&r, &subscription_name(ct));
        assert_eq!(s.status, Status::Fail);
        let fix = s.fix.as_deref().unwrap();
        assert!(
            fix.contains("unified audit logging") && fix.contains("Purview"),
            "{fix}"
        );
        assert_eq!(check(&r, &listing_name(ct)).status, Status::Skipped);
    }
    assert_eq!(api.starts.lock().unwrap().len(), 1);
    assert!(api.listed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn dlp_without_read_dlp_is_a_warning() {
    let tokens = FakeTokens {
        manage: Ok(token(&[ACTIVITY_FEED_READ])),
        ..FakeTokens::healthy()
    };
    let (r, _) = diagnose(all_enabled(), tokens, GraphAnswer::Users(1)).await;
    let c = check(&r, "roles.manage");
    assert_eq!(c.status, Status::Warn);
    assert!(c.fix.as_deref().unwrap().contains("ActivityFeed.ReadDlp"));
    assert!(!r.failed());
}

#[tokio::test]
async fn certificate_expiry_ok_warn_fail() {
    for (days, status) in [(200, Status::Ok), (10, Status::Warn), (-1, Status::Fail)] {
        let tokens = FakeTokens {
            info: CredentialInfo::Certificate {
                not_after: Some(Utc::now() + Duration::days(days)),
                thumbprint: "AB12".into(),
            },
            ..FakeTokens::healthy()
        };
        let (r, _) = diagnose(all_enabled(), tokens, GraphAnswer::Users(1)).await;
        let c = check(&r, "certificate");
        assert_eq!(c.status, status, "{days} days: {c:?}");
        assert!(c.detail.contains("AB12"));
        if status != Status::Ok {
            assert!(c.fix.as_deref().unwrap().contains("keygen"), "{c:?}");
        }
    }
}

#[test]
fn roles_come_from_the_payload_only() {
    assert_eq!(
        token_roles(token(&["A", "B"]).bearer()),
        Some(vec!["A".to_owned(), "B".to_owned()])
    );
    assert_eq!(token_roles(token(&[]).bearer()), Some(Vec::new()));
    assert_eq!(token_roles("opaque-token"), None);
    assert_eq!(token_roles("a.b.c.d"), None);
    assert_eq!(token_roles("a.!!!.c"), None);
}

#[test]
fn reports_never_hold_the_token() {
    let t = token(&[ACTIVITY_FEED_READ]);
    let c = token_ok("token.manage", "https://manage.office.com", &t, Utc::now());
    let json = serde_json::to_string(&c).unwrap();
    assert!(
        !json.contains(t.bearer()) && !json.contains("eyJ"),
        "{json}"
    );
}

#[derive(Default)]
struct FakeDeployment {
    dlq: u64,
    objects: Vec<(String, DateTime<Utc>)>,
}

impl DeploymentProbe for FakeDeployment {
    async fn table(&self, name: &str) -> Result<TableInfo, ProbeError> {
        if name == "missing" {
            return Err(ProbeError {
                message: "ResourceNotFoundException".into(),
                fix: "no such table".into(),
            });
        }
        Ok(TableInfo {
            status: "ACTIVE".into(),
            items: Some(3),
        })
    }
    async fn queue(&self, url: &str) -> Result<QueueDepth, ProbeError> {
        Ok(QueueDepth {
            visible: if url.contains("dlq") { self.dlq } else { 2 },
            in_flight: 0,
        })
    }
    async fn bucket(&self, _name: &str) -> Result<(), ProbeError> {
        Ok(())
    }
    async fn newest_object(
        &self,
        _bucket: &str,
        prefix: &str,
    ) -> Result<Option<NewestObject>, ProbeError> {
        Ok(self
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .max_by_key(|(_, t)| *t)
            .map(|(k, t)| NewestObject {
                key: k.clone(),
                modified: *t,
            }))
    }
}

#[tokio::test]
async fn deployment_checks_dlq_depth_and_last_record_age() {
    let now = Utc::now();
    let t = tenant(vec![ContentType::Exchange, ContentType::General]);
    let key = format!(
        "ocsf/tenant_id={}/content_type=Audit.Exchange/event_date={}/x.ndjson.gz",
        t.id,
        now.format("%Y-%m-%d")
    );
    let probe = FakeDeployment {
        dlq: 3,
        objects: vec![(key.clone(), now - Duration::minutes(12))],
    };
    let fake = Fake {
        api: Arc::new(all_enabled()),
        tokens: Arc::new(FakeTokens::healthy()),
    };
    let graph = FakeGraph(GraphAnswer::Users(1));
    let clock = FixedClock::at(now);
    let names = Deployment {
        table: Some("state".into()),
        queue_url: Some("https://sqs/jobs".into()),
        dlq_url: Some("https://sqs/dlq".into()),
        bucket: Some("events".into()),
    };
    let r = Doctor::new(&fake, &graph, &clock)
        .with_deployment(&probe, names)
        .run(&[t])
        .await;
    let aws: BTreeMap<&str, &Check> = r.aws.iter().map(|c| (c.name.as_str(), c)).collect();
    assert_eq!(aws["aws.table"].status, Status::Ok);
    assert_eq!(aws["aws.queue"].status, Status::Ok);
    assert_eq!(aws["aws.bucket"].status, Status::Ok);
    let dlq = aws["aws.dlq"];
    assert_eq!(dlq.status, Status::Fail);
    assert!(dlq.detail.contains('3'));
    assert!(dlq.fix.as_deref().unwrap().contains("`reason` attribute"));
    let ex = check(&r, "last_record.Audit.Exchange");
    assert_eq!(ex.status, Status::Ok);
    assert!(
        ex.detail.contains("12 min ago") && ex.detail.contains(&key),
        "{}",
        ex.detail
    );
    let gen_ = check(&r, "last_record.Audit.General");
    assert_eq!(gen_.status, Status::Warn);
    assert!(gen_.detail.contains("no records in the last day"));
    assert!(r.failed());
}

#[tokio::test]
async fn a_missing_table_fails_and_unnamed_resources_are_skipped() {
    let probe = FakeDeployment::default();
    let names = Deployment {
        table: Some("missing".into()),
        ..Deployment::default()
    };
    let checks = deployment_checks(&probe, &names).await;
    assert_eq!(checks[0].status, Status::Fail);
    assert_eq!(checks[0].fix.as_deref(), Some("no such table"));
    assert!(checks[1..].iter().all(|c| c.status == Status::Skipped));
}

#[test]
fn durations_read_well() {
    assert_eq!(human_duration(Duration::seconds(40)), "40 s");
    assert_eq!(human_duration(Duration::minutes(75)), "1 h 15 min");
    assert_eq!(human_duration(Duration::hours(50)), "2 d 2 h");
}

struct Broken;

impl TenantConnector for Broken {
    type Api = FakeApi;
    type Tokens = FakeTokens;
    async fn connect(&self, t: &Tenant) -> Result<Connection<FakeApi, FakeTokens>, SetupError> {
        Err(SetupError {
            tenant: t.id.to_string(),
            message: "secret environment variable X: the variable is not set: export X".into(),
        })
    }
}

#[tokio::test]
async fn an_unloadable_credential_fails_once_and_skips_the_rest() {
    let graph = FakeGraph(GraphAnswer::Users(1));
    let clock = FixedClock::at(Utc::now());
    let mut disabled = tenant(vec![ContentType::Exchange]);
    disabled.enabled = false;
    disabled.id = TenantId::parse("9b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f").unwrap();
    let r = Doctor::new(&Broken, &graph, &clock)
        .run(&[tenant(vec![ContentType::Exchange]), disabled])
        .await;
    let c = check(&r, "credential");
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("export X"), "{c:?}");
    assert!(c.fix.as_deref().unwrap().contains("environment variable X"));
    assert_eq!(r.summary.fail, 1);
    assert!(
        r.tenants[0].checks[1..]
            .iter()
            .all(|c| c.status == Status::Skipped)
    );
    assert_eq!(r.tenants[0].checks.len(), 9, "{:#?}", r.tenants[0].checks);
    assert_eq!(
        r.tenants[1].checks.len(),
        1,
        "a disabled tenant is not checked"
    );
    assert_eq!(r.tenants[1].checks[0].name, "enabled");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["tenants"][0]["checks"][0]["status"], "fail");
    assert_eq!(
        json["summary"]["skipped"], 9,
        "8 after the credential, 1 disabled tenant"
    );
}
