//! Directory users (Microsoft Graph `/users`), the per-tenant snapshot kept in the bucket, and
//! the sync state kept in the state table.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TenantId;

/// One Entra user, as the collector keeps it (the `$select`ed Graph properties).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// Object id (GUID), Graph `id`.
    pub id: String,
    /// `userPrincipalName`.
    #[serde(default)]
    pub upn: Option<String>,
    /// `displayName`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `mail`.
    #[serde(default)]
    pub mail: Option<String>,
    /// `department`.
    #[serde(default)]
    pub department: Option<String>,
    /// `jobTitle`.
    #[serde(default)]
    pub job_title: Option<String>,
    /// `accountEnabled`.
    #[serde(default)]
    pub account_enabled: Option<bool>,
    /// `userType` (`Member` or `Guest`).
    #[serde(default)]
    pub user_type: Option<String>,
}

/// Every user of a tenant's directory at `synced_at`, ordered by object id. Stored as gzip
/// JSON at [`DirectorySnapshot::key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorySnapshot {
    /// The tenant.
    pub tenant: TenantId,
    /// When the sync round that produced it finished.
    pub synced_at: DateTime<Utc>,
    /// The users, ordered by object id.
    pub users: Vec<DirectoryUser>,
}

impl DirectorySnapshot {
    /// The object key of a tenant's snapshot: `directory/tenant_id={tenant}/users.json.gz`.
    pub fn key(tenant: &TenantId) -> String {
        format!("directory/tenant_id={tenant}/users.json.gz")
    }

    /// A snapshot of `users` (sorted by id; a repeated id keeps the last one).
    pub fn new(
        tenant: TenantId,
        synced_at: DateTime<Utc>,
        users: impl IntoIterator<Item = DirectoryUser>,
    ) -> DirectorySnapshot {
        let by_id: BTreeMap<String, DirectoryUser> =
            users.into_iter().map(|u| (u.id.clone(), u)).collect();
        DirectorySnapshot {
            tenant,
            synced_at,
            users: by_id.into_values().collect(),
        }
    }
}

/// Where a tenant's directory sync stands (state table item `TENANT#{tenant}` / `DIRECTORY`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorySync {
    /// The Graph `@odata.deltaLink` that continues the sync: opaque, used verbatim.
    pub delta_link: String,
    /// When the snapshot matching this link was written.
    pub synced_at: DateTime<Utc>,
    /// Users in that snapshot.
    pub users: u64,
}

impl fmt::Debug for DirectorySync {
    /// The delta link is not a secret, but it is long and opaque: only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectorySync")
            .field(
                "delta_link",
                &format_args!("<{} chars>", self.delta_link.len()),
            )
            .field("synced_at", &self.synced_at)
            .field("users", &self.users)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, dept: &str) -> DirectoryUser {
        DirectoryUser {
            id: id.into(),
            upn: Some(format!("{id}@contoso.com")),
            display_name: None,
            mail: None,
            department: Some(dept.into()),
            job_title: None,
            account_enabled: Some(true),
            user_type: None,
        }
    }

    #[test]
    fn snapshots_are_sorted_and_keep_the_last_of_a_repeated_id() {
        let t = TenantId::parse("3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d").unwrap();
        let s = DirectorySnapshot::new(
            t.clone(),
            Utc::now(),
            [user("b", "x"), user("a", "x"), user("b", "y")],
        );
        let ids: Vec<&str> = s.users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(s.users[1].department.as_deref(), Some("y"));
        assert_eq!(
            DirectorySnapshot::key(&t),
            "directory/tenant_id=3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d/users.json.gz"
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<DirectorySnapshot>(&json).unwrap(), s);
    }

    #[test]
    fn the_delta_link_is_not_in_debug() {
        let s = DirectorySync {
            delta_link: "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=SECRETISH".into(),
            synced_at: Utc::now(),
            users: 3,
        };
        assert!(!format!("{s:?}").contains("SECRETISH"));
    }
}
