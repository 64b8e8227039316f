//! Unit tests of the users sync with in-memory fakes.

use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::*;
use crate::app::SetupError;
use crate::app::testkit::{FixedClock, TENANT, tenant};
use crate::graph::{GraphStats, UserPatch};
use crate::model::{ContentType, TenantId};
use crate::sink::FolderSink;
use crate::store::MemoryStore;

/// A directory with a change log; delta links are `v{version}`.
#[derive(Default)]
struct FakeDirectory {
    inner: Mutex<Dir>,
}

#[derive(Default)]
struct Dir {
    users: Vec<DirectoryUser>,
    /// (version, user id, removed)
    log: Vec<(u64, String, bool)>,
    version: u64,
    expired: bool,
    forbidden: bool,
    rounds: Vec<Option<String>>,
    calls: u64,
}

fn user(n: u32, dept: &str) -> DirectoryUser {
    DirectoryUser {
        id: format!("00000000-0000-4000-8000-{n:012}"),
        upn: Some(format!("user{n}@contoso.com")),
        display_name: Some(format!("User {n}")),
        mail: Some(format!("user{n}@contoso.com")),
        department: Some(dept.into()),
        job_title: Some("Engineer".into()),
        account_enabled: Some(true),
        user_type: Some("Member".into()),
    }
}

fn patch(u: &DirectoryUser) -> UserPatch {
    UserPatch {
        id: u.id.clone(),
        upn: Some(u.upn.clone()),
        display_name: Some(u.display_name.clone()),
        mail: Some(u.mail.clone()),
        department: Some(u.department.clone()),
        job_title: Some(u.job_title.clone()),
        account_enabled: Some(u.account_enabled),
        user_type: Some(u.user_type.clone()),
    }
}

impl FakeDirectory {
    fn with(users: Vec<DirectoryUser>) -> Arc<FakeDirectory> {
        let f = FakeDirectory::default();
        f.inner.lock().unwrap().users = users;
        Arc::new(f)
    }
    fn change(&self, f: impl FnOnce(&mut Vec<DirectoryUser>) -> (String, bool)) {
        let mut d = self.inner.lock().unwrap();
        let (id, removed) = f(&mut d.users);
        d.version += 1;
        let v = d.version;
        d.log.push((v, id, removed));
    }
    fn users(&self) -> Vec<DirectoryUser> {
        let mut u = self.inner.lock().unwrap().users.clone();
        u.sort_by(|a, b| a.id.cmp(&b.id));
        u
    }
}

impl DirectoryApi for FakeDirectory {
    async fn users_delta(&self, delta_link: Option<&str>) -> Result<DeltaRound, GraphError> {
        let mut d = self.inner.lock().unwrap();
        d.calls += 1;
        d.rounds.push(delta_link.map(str::to_owned));
        if d.forbidden {
            return Err(GraphError::Forbidden {
                tenant: TENANT.into(),
                code: "Authorization_RequestDenied".into(),
                message: "Insufficient privileges to complete the operation.".into(),
            });
        }
        let changes = match delta_link {
            None => d
                .users
                .iter()
                .map(|u| UserChange::Upsert(patch(u)))
                .collect(),
            Some(link) => {
                if d.expired {
                    return Err(GraphError::DeltaExpired {
                        tenant: TENANT.into(),
                        status: 410,
                        code: "syncStateNotFound".into(),
                    });
                }
                let since: u64 = link.trim_start_matches('v').parse().unwrap();
                d.log
                    .iter()
                    .filter(|(v, _, _)| *v > since)
                    .map(|(_, id, removed)| {
                        match (removed, d.users.iter().find(|u| &u.id == id)) {
                            (false, Some(u)) => UserChange::Upsert(UserPatch {
                                // Graph may send only what changed: here, the department.
                                id: u.id.clone(),
                                department: Some(u.department.clone()),
                                ..UserPatch::default()
                            }),
                            _ => UserChange::Removed {
                                id: id.clone(),
                                reason: "deleted".into(),
                            },
                        }
                    })
                    .collect()
            }
        };
        Ok(DeltaRound {
            changes,
            delta_link: format!("v{}", d.version),
            pages: 1,
        })
    }

    fn stats(&self) -> GraphStats {
        let d = self.inner.lock().unwrap();
        GraphStats {
            calls: d.calls,
            pages: d.calls,
            ..GraphStats::default()
        }
    }
}

struct OneDirectory(Arc<FakeDirectory>);

impl DirectoryProvider for OneDirectory {
    type Api = FakeDirectory;
    async fn directory(&self, _: &Tenant) -> Result<Arc<FakeDirectory>, SetupError> {
        Ok(self.0.clone())
    }
}

struct Setup {
    store: Arc<MemoryStore>,
    sink: FolderSink,
    dir: std::path::PathBuf,
}

impl Setup {
    async fn new() -> Setup {
        let store = Arc::new(MemoryStore::default());
        store
            .put_tenant(&tenant(ContentType::ALL.to_vec()))
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("users-sync-{}", uuid::Uuid::new_v4()));
        Setup {
            store,
            sink: FolderSink::new(dir.clone()),
            dir,
        }
    }

    async fn run(&self, api: &Arc<FakeDirectory>) -> TenantSync {
        let report = run(
            &self.store,
            &self.sink,
            &OneDirectory(api.clone()),
            &FixedClock::at(Utc::now()),
            &UsersSyncSettings::default(),
            Instant::now() + std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert_eq!(report.tenants.len(), 1);
        report.tenants.into_iter().next().unwrap()
    }

    async fn snapshot(&self) -> Vec<DirectoryUser> {
        match read_snapshot(&self.sink, &TenantId::parse(TENANT).unwrap())
            .await
            .unwrap()
        {
            SnapshotRead::Found(s) => s.users,
            other => panic!("{other:?}"),
        }
    }

    async fn state(&self) -> Option<DirectorySync> {
        self.store
            .load_directory_sync(&TenantId::parse(TENANT).unwrap())
            .await
            .unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_full_sync_then_a_delta_with_an_update_an_addition_and_a_removal() {
    let s = Setup::new().await;
    let api = FakeDirectory::with(vec![user(1, "Sales"), user(2, "Sales"), user(3, "IT")]);
    let r = s.run(&api).await;
    assert_eq!(r.mode, Some(SyncMode::Full), "{r:?}");
    assert_eq!((r.users, r.changes, r.removed), (3, 3, 0));
    assert_eq!(s.snapshot().await, api.users());
    assert_eq!(s.state().await.unwrap().delta_link, "v0");

    api.change(|u| {
        u[0].department = Some("Finance".into());
        (u[0].id.clone(), false)
    });
    api.change(|u| {
        u.push(user(4, "Legal"));
        (u[3].id.clone(), false)
    });
    api.change(|u| {
        let gone = u.remove(1);
        (gone.id, true)
    });
    let r = s.run(&api).await;
    assert_eq!(r.mode, Some(SyncMode::Delta), "{r:?}");
    assert_eq!((r.users, r.changes, r.removed), (3, 2, 1));
    let snap = s.snapshot().await;
    assert_eq!(snap[0].department.as_deref(), Some("Finance"));
    assert_eq!(
        snap[0].display_name.as_deref(),
        Some("User 1"),
        "a partial entry keeps the unchanged properties"
    );
    let ids: Vec<&str> = snap.iter().map(|u| u.id.as_str()).collect();
    let want: Vec<String> = [1, 3, 4].iter().map(|n| user(*n, "").id).collect();
    assert_eq!(ids, want);
    let state = s.state().await.unwrap();
    assert_eq!((state.delta_link.as_str(), state.users), ("v3", 3));
    assert_eq!(
        api.inner.lock().unwrap().rounds,
        [None, Some("v0".to_owned())]
    );
}

#[tokio::test]
async fn an_expired_delta_token_is_replaced_by_a_full_resync() {
    let s = Setup::new().await;
    let api = FakeDirectory::with(vec![user(1, "Sales"), user(2, "IT")]);
    s.run(&api).await;
    api.change(|u| {
        let gone = u.remove(0);
        (gone.id, true)
    });
    api.inner.lock().unwrap().expired = true;
    let r = s.run(&api).await;
    assert_eq!(r.mode, Some(SyncMode::Resync), "{r:?}");
    assert!(r.resync_reason.as_deref().unwrap().contains("410"), "{r:?}");
    assert!(r.error.is_none());
    assert_eq!(r.users, 1);
    assert_eq!(
        s.snapshot().await,
        api.users(),
        "the full round replaced the snapshot"
    );
    assert_eq!(
        api.inner.lock().unwrap().rounds,
        [None, Some("v0".to_owned()), None]
    );
    assert_eq!(s.state().await.unwrap().delta_link, "v1");
}

#[tokio::test]
async fn a_missing_or_corrupt_snapshot_with_a_delta_link_means_a_full_sync() {
    let s = Setup::new().await;
    let api = FakeDirectory::with(vec![user(1, "Sales")]);
    s.run(&api).await;
    let key = DirectorySnapshot::key(&TenantId::parse(TENANT).unwrap());
    std::fs::remove_file(s.sink.path_of(&key).unwrap()).unwrap();
    let r = s.run(&api).await;
    assert_eq!(r.mode, Some(SyncMode::Resync), "{r:?}");
    assert!(r.resync_reason.as_deref().unwrap().contains("missing"));
    assert_eq!(s.snapshot().await, api.users());
    std::fs::write(s.sink.path_of(&key).unwrap(), b"garbage").unwrap();
    let r = s.run(&api).await;
    assert_eq!(r.mode, Some(SyncMode::Resync), "{r:?}");
    assert!(r.resync_reason.as_deref().unwrap().contains("unreadable"));
    assert_eq!(s.snapshot().await, api.users());
    assert_eq!(
        api.inner.lock().unwrap().rounds,
        [None, None, None],
        "the saved delta link is not used without its snapshot"
    );
}

#[tokio::test]
async fn a_forbidden_tenant_is_reported_as_a_config_error_with_the_fix() {
    let s = Setup::new().await;
    let api = FakeDirectory::with(vec![user(1, "Sales")]);
    api.inner.lock().unwrap().forbidden = true;
    let r = s.run(&api).await;
    assert_eq!(r.mode, None);
    assert_eq!(r.error_kind, Some(ErrorKind::Config));
    let e = r.error.unwrap();
    assert!(
        e.contains("User.Read.All") && e.contains("admin consent"),
        "{e}"
    );
    assert!(s.state().await.is_none(), "nothing saved");
    let json = serde_json::to_value(
        run(
            &s.store,
            &s.sink,
            &OneDirectory(api.clone()),
            &FixedClock::at(Utc::now()),
            &UsersSyncSettings::default(),
            Instant::now() + std::time::Duration::from_secs(60),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(json["tenants"][0]["error_kind"], "config");
}

#[tokio::test]
async fn one_failing_tenant_does_not_stop_the_others_and_disabled_ones_are_skipped() {
    let s = Setup::new().await;
    let mut other = tenant(ContentType::ALL.to_vec());
    other.id = TenantId::parse("41463f53-8812-40f4-890f-865bf6e35190").unwrap();
    s.store.put_tenant(&other).await.unwrap();
    let mut off = tenant(ContentType::ALL.to_vec());
    off.id = TenantId::parse("51463f53-8812-40f4-890f-865bf6e35190").unwrap();
    off.enabled = false;
    s.store.put_tenant(&off).await.unwrap();

    /// Forbidden for `TENANT`, fine for the other.
    struct Split(Arc<FakeDirectory>, Arc<FakeDirectory>);
    impl DirectoryProvider for Split {
        type Api = FakeDirectory;
        async fn directory(&self, t: &Tenant) -> Result<Arc<FakeDirectory>, SetupError> {
            Ok(if t.id.as_str() == TENANT {
                self.0.clone()
            } else {
                self.1.clone()
            })
        }
    }
    let bad = FakeDirectory::with(vec![]);
    bad.inner.lock().unwrap().forbidden = true;
    let good = FakeDirectory::with(vec![user(1, "Sales")]);
    let report = run(
        &s.store,
        &s.sink,
        &Split(bad, good),
        &FixedClock::at(Utc::now()),
        &UsersSyncSettings::default(),
        Instant::now() + std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(report.tenants.len(), 2, "the disabled tenant is skipped");
    assert_eq!(report.failures(), 1);
    let ok = report
        .tenants
        .iter()
        .find(|t| t.tenant_id == other.id.as_str())
        .unwrap();
    assert_eq!((ok.mode, ok.users), (Some(SyncMode::Full), 1));
}
