//! Directory sync end to end through the built binaries on moto + the emulator: users-sync
//! (full, delta, 410 → resync, 403 reported), then lister → fetcher with actor enrichment.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::runtime::LambdaProcess;
use integration_tests::stack::Stack;
use o365_emulator::Emulator;
use serde_json::Value;
use shared::app::directory::{SnapshotRead, read_snapshot};
use shared::model::{DirectoryUser, TenantId};
use shared::store::StateStore;

use crate::support::*;

/// Seconds a Graph delta token lives in this scenario.
const DELTA_TTL_SECS: i64 = 600;

fn scheduled(function: &str) -> Value {
    let text = match function {
        "users-sync" => include_str!("../../events/users-sync/scheduled.json"),
        _ => include_str!("../../events/lister/scheduled.json"),
    };
    serde_json::from_str(text).expect("event")
}

/// The emulator's users as the collector keeps them, ordered by id.
fn expected(emu: &Emulator, tenant: &str) -> Vec<DirectoryUser> {
    let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let mut users: Vec<DirectoryUser> = emu
        .users(tenant)
        .into_iter()
        .map(|u| DirectoryUser {
            id: u.id,
            upn: non_empty(&u.user_principal_name),
            display_name: non_empty(&u.display_name),
            mail: non_empty(&u.mail),
            department: u.department.as_deref().and_then(non_empty),
            job_title: u.job_title.as_deref().and_then(non_empty),
            account_enabled: Some(u.account_enabled),
            user_type: non_empty(&u.user_type),
        })
        .collect();
    users.sort_by(|a, b| a.id.cmp(&b.id));
    users
}

async fn snapshot(stack: &Stack, tenant: &str) -> Option<Vec<DirectoryUser>> {
    match read_snapshot(&stack.sink(), &TenantId::parse(tenant).unwrap())
        .await
        .expect("read snapshot")
    {
        SnapshotRead::Found(s) => Some(s.users),
        SnapshotRead::Missing => None,
        SnapshotRead::Corrupt(why) => panic!("corrupt snapshot: {why}"),
    }
}

async fn sync(f: &mut LambdaProcess) -> BTreeMap<String, Value> {
    let report = f
        .invoke(scheduled("users-sync"), Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("users-sync failed: {e:?}\n{}", f.logs()));
    report["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| (t["tenant_id"].as_str().unwrap().to_owned(), t.clone()))
        .collect()
}

fn new_user(id: &str) -> o365_emulator::DirectoryUser {
    o365_emulator::DirectoryUser {
        id: id.into(),
        user_principal_name: "new.hire@contoso.onmicrosoft.com".into(),
        display_name: "New Hire".into(),
        given_name: "New".into(),
        surname: "Hire".into(),
        mail: "new.hire@contoso.onmicrosoft.com".into(),
        job_title: Some("Analyst".into()),
        department: Some("Risk".into()),
        account_enabled: true,
        user_type: "Member".into(),
        puid: "1003BFFDAAAAAAAA".into(),
        sid: "S-1-5-21-1-2-3-9999".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_sync_keeps_the_directory_snapshot_exact_through_delta_and_410_and_the_fetcher_enriches_actors()
 {
    let stack = Stack::create(20).await;
    let mut sc = scenario("");
    sc.delta_token_ttl_secs = DELTA_TTL_SECS;
    sc.graph_page_size = 3; // several pages per round
    // Only the certificate app (tenant A) may read users; tenant B's app lacks User.Read.All.
    for app in &mut sc.apps {
        if app.client_id == APP_CERT {
            app.graph_roles = vec!["User.Read.All".into()];
        }
    }
    let emu = Emulator::start(sc).await.expect("emulator");

    let dir = deploy_tenants(&stack, &emu).await;
    let store = stack.store();
    let tenant_a = TenantId::parse(TENANT_CERT).unwrap();
    let env = stack.function_env(&[]);
    let mut users_sync = LambdaProcess::spawn("users-sync", &env).await;
    assert!(
        users_sync.init_error().is_none(),
        "users-sync init failed: {}",
        users_sync.logs()
    );

    // 1. Full sync: the snapshot is the directory; tenant B's 403 is reported with the fix.
    let t0 = std::time::Instant::now();
    let report = sync(&mut users_sync).await;
    let full_ms = t0.elapsed().as_millis();
    let a = &report[TENANT_CERT];
    assert_eq!(a["mode"], "full", "{a}");
    assert!(a["error"].is_null(), "{a}");
    let users = expected(&emu, TENANT_CERT);
    assert_eq!(a["users"].as_u64(), Some(users.len() as u64));
    assert!(a["pages"].as_u64().unwrap() >= 3, "paged: {a}");
    assert_eq!(snapshot(&stack, TENANT_CERT).await.as_ref(), Some(&users));
    let state = store
        .load_directory_sync(&tenant_a)
        .await
        .unwrap()
        .expect("delta link saved");
    assert!(state.delta_link.contains("$deltatoken="), "{state:?}");
    assert_eq!(state.users, users.len() as u64);
    let b = &report[TENANT_SECRET];
    assert_eq!(b["error_kind"], "config", "{b}");
    let b_error = b["error"].as_str().unwrap();
    assert!(
        b_error.contains("User.Read.All") && b_error.contains("admin consent"),
        "{b_error}"
    );
    assert_eq!(snapshot(&stack, TENANT_SECRET).await, None);

    // 2. Delta: an update, an addition and a removal are applied exactly.
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let removed_upn = users[1].upn.as_deref().map(str::to_lowercase);
    assert!(emu.update_user(TENANT_CERT, &ids[0], |u| {
        u.department = Some("Forensics".into());
        u.account_enabled = false;
    }));
    assert!(emu.add_user(
        TENANT_CERT,
        new_user("0a0a0a0a-1111-4222-8333-444455556666")
    ));
    assert!(emu.remove_user(TENANT_CERT, &ids[1]));
    let t1 = std::time::Instant::now();
    let report = sync(&mut users_sync).await;
    let delta_ms = t1.elapsed().as_millis();
    let a = &report[TENANT_CERT];
    assert_eq!(a["mode"], "delta", "{a}");
    assert_eq!(
        (a["changes"].as_u64(), a["removed"].as_u64()),
        (Some(2), Some(1)),
        "{a}"
    );
    let users = expected(&emu, TENANT_CERT);
    assert_eq!(snapshot(&stack, TENANT_CERT).await.as_ref(), Some(&users));
    assert!(
        users
            .iter()
            .any(|u| u.department.as_deref() == Some("Forensics"))
    );

    // 3. The delta token expires: 410 Gone → full resync, reported as such.
    emu.advance_clock(chrono::Duration::seconds(DELTA_TTL_SECS + 60));
    assert!(emu.update_user(TENANT_CERT, &ids[2], |u| {
        u.job_title = Some("Chief Auditor".into());
    }));
    let report = sync(&mut users_sync).await;
    let a = &report[TENANT_CERT];
    assert_eq!(a["mode"], "resync", "{a}");
    assert!(
        a["resync_reason"].as_str().unwrap_or("").contains("410"),
        "{a}"
    );
    let users = expected(&emu, TENANT_CERT);
    assert_eq!(snapshot(&stack, TENANT_CERT).await.as_ref(), Some(&users));
    assert!(
        emu.requests()
            .iter()
            .any(|r| r.endpoint == "graph" && r.status == 410),
        "no 410 was served"
    );
    assert!(users_sync.logs().contains("full resync"), "410 not logged");
    eprintln!(
        "users-sync: full round {full_ms} ms, delta round {delta_ms} ms, {} users",
        users.len()
    );

    // 4. Lister + fetcher: actors who are directory users carry the directory's facts.
    let mut lister = LambdaProcess::spawn("lister", &env).await;
    let mut fetcher = LambdaProcess::spawn("fetcher", &env).await;
    let report = lister
        .invoke(scheduled("lister"), Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("lister failed: {e:?}\n{}", lister.logs()));
    for f in report["feeds"].as_array().expect("feeds") {
        assert!(f["error"].is_null(), "feed failed: {f}");
    }
    drain(&stack, &mut fetcher).await;

    let by_upn: BTreeMap<String, &DirectoryUser> = users
        .iter()
        .filter_map(|u| Some((u.upn.as_deref()?.to_lowercase(), u)))
        .collect();
    let mut written: Written = BTreeMap::new();
    let (mut enriched, mut plain_b, mut removed_seen) = (0, 0, 0);
    for key in stack
        .object_keys()
        .await
        .iter()
        .filter(|k| k.starts_with("ocsf/"))
    {
        let lines = stack.object_lines(key).await;
        add_lines(&mut written, key, &lines); // complete OCSF events, enriched or not
        let (tenant, _) = partition(key);
        for e in &lines {
            let name = e["actor"]["user"]["name"]
                .as_str()
                .unwrap_or("")
                .to_lowercase();
            let d = &e["o365"]["directory_user"];
            if tenant == TENANT_SECRET {
                assert!(d.is_null(), "tenant B has no snapshot: {e}");
                plain_b += 1;
                continue;
            }
            if let Some(u) = by_upn.get(&name) {
                assert_eq!(d["id"].as_str(), Some(u.id.as_str()), "{e}");
                assert_eq!(d["display_name"].as_str(), u.display_name.as_deref());
                assert_eq!(d["department"].as_str(), u.department.as_deref());
                assert_eq!(d["job_title"].as_str(), u.job_title.as_deref());
                assert_eq!(d["account_enabled"].as_bool(), u.account_enabled);
                assert_eq!(
                    e["actor"]["user"]["full_name"].as_str(),
                    u.display_name.as_deref()
                );
                assert_eq!(e["actor"]["user"]["uid_alt"].as_str(), Some(u.id.as_str()));
                if let Some(dept) = &u.department {
                    assert_eq!(
                        e["actor"]["user"]["org"]["ou_name"].as_str(),
                        Some(dept.as_str())
                    );
                }
                enriched += 1;
            } else if Some(&name) == removed_upn.as_ref() {
                assert!(d.is_null(), "a removed user is not in the snapshot: {e}");
                removed_seen += 1;
            }
        }
    }
    assert!(enriched > 50, "only {enriched} enriched events");
    assert!(plain_b > 20, "only {plain_b} events of tenant B");
    eprintln!(
        "enrichment: {enriched} events enriched, {plain_b} events of the tenant without a snapshot, {removed_seen} of the removed user"
    );
    let _ = std::fs::remove_dir_all(dir);
}
