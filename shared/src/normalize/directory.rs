//! Actor enrichment from the directory snapshot (see docs/schema.md, "Directory enrichment").
//!
//! The actor is matched, in this order, by:
//!
//! 1. `actor.user.uid` as an object id (Entra records carry the user's object id in `UserKey`;
//!    Exchange and SharePoint carry a PUID there, which never matches an object id);
//! 2. `actor.user.name` (the record's `UserId`) as a UPN or mail address, case-insensitively;
//! 3. the raw record's `Actor` entries (Entra): an `ID` that is an object id, or a UPN.
//!
//! A match adds fields and never removes or replaces one the normalizer set.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::model::DirectoryUser;

/// The users of a snapshot, by object id and by lower-cased UPN and mail.
#[derive(Debug, Default)]
pub struct DirectoryIndex {
    users: Vec<DirectoryUser>,
    by_id: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
}

impl DirectoryIndex {
    /// Indexes `users` (a later user with the same id, UPN or mail wins; a UPN wins over
    /// another user's mail).
    pub fn new(users: Vec<DirectoryUser>) -> DirectoryIndex {
        let mut by_id = HashMap::with_capacity(users.len());
        let mut by_name = HashMap::with_capacity(users.len() * 2);
        for (i, u) in users.iter().enumerate() {
            by_id.insert(u.id.trim().to_ascii_lowercase(), i);
            if let Some(mail) = u.mail.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
                by_name.entry(mail.to_lowercase()).or_insert(i);
            }
        }
        for (i, u) in users.iter().enumerate() {
            if let Some(upn) = u.upn.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
                by_name.insert(upn.to_lowercase(), i);
            }
        }
        DirectoryIndex {
            users,
            by_id,
            by_name,
        }
    }

    /// Users indexed.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True without users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user with this object id (case-insensitive).
    pub fn by_id(&self, id: &str) -> Option<&DirectoryUser> {
        self.by_id
            .get(&id.trim().to_ascii_lowercase())
            .map(|i| &self.users[*i])
    }

    /// The user with this UPN or mail address (case-insensitive).
    pub fn by_name(&self, name: &str) -> Option<&DirectoryUser> {
        self.by_name
            .get(&name.trim().to_lowercase())
            .map(|i| &self.users[*i])
    }

    /// The directory user who is the actor of `event` (an OCSF event of this crate).
    pub fn actor_of(&self, event: &Value) -> Option<&DirectoryUser> {
        let user = event.get("actor").and_then(|a| a.get("user"));
        let text = |k: &str| user.and_then(|u| u.get(k)).and_then(Value::as_str);
        if let Some(u) = text("uid").and_then(|id| self.by_id(id)) {
            return Some(u);
        }
        if let Some(u) = text("name").and_then(|n| self.by_name(n)) {
            return Some(u);
        }
        let actors = event
            .get("unmapped")
            .and_then(|r| r.get("Actor"))
            .and_then(Value::as_array)?;
        actors.iter().find_map(|a| {
            let id = a.get("ID").and_then(Value::as_str)?;
            self.by_id(id)
                .or_else(|| id.contains('@').then(|| self.by_name(id)).flatten())
        })
    }
}

/// Adds the directory facts of the event's actor, when the actor is a directory user:
/// `actor.user.full_name` (display name), `actor.user.email_addr` (mail), `actor.user.uid_alt`
/// (object id), `actor.user.org.ou_name` (department), each only if absent, and
/// `o365.directory_user` = `{id, display_name, department, job_title, account_enabled,
/// user_type}`. Returns whether the actor matched; an unmatched event is unchanged.
pub fn enrich(event: &mut Value, dir: &DirectoryIndex) -> bool {
    let Some(user) = dir.actor_of(event) else {
        return false;
    };
    let Value::Object(ev) = event else {
        return false;
    };
    let actor = object_at(ev, "actor");
    let u = object_at(actor, "user");
    let mut add = |k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty())
            && u.get(k).is_none_or(Value::is_null)
        {
            u.insert(k.to_owned(), Value::String(v.to_owned()));
        }
    };
    add("full_name", user.display_name.as_deref());
    add("email_addr", user.mail.as_deref());
    add("uid_alt", Some(user.id.as_str()));
    if let Some(dept) = user.department.as_deref().filter(|d| !d.is_empty()) {
        let org = object_at(u, "org");
        if org.get("ou_name").is_none_or(Value::is_null) {
            org.insert("ou_name".into(), Value::String(dept.to_owned()));
        }
    }
    let mut d = Map::new();
    d.insert("id".into(), Value::String(user.id.clone()));
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            d.insert(k.to_owned(), v);
        }
    };
    opt("display_name", user.display_name.clone().map(Value::String));
    opt("department", user.department.clone().map(Value::String));
    opt("job_title", user.job_title.clone().map(Value::String));
    opt("account_enabled", user.account_enabled.map(Value::Bool));
    opt("user_type", user.user_type.clone().map(Value::String));
    object_at(ev, "o365").insert("directory_user".into(), Value::Object(d));
    true
}

/// The object at `k`, created (or a non-object replaced) when needed.
fn object_at<'m>(m: &'m mut Map<String, Value>, k: &str) -> &'m mut Map<String, Value> {
    let slot = m
        .entry(k.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        // Only reached for a key this crate always writes as an object; a null is replaced.
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn alice() -> DirectoryUser {
        DirectoryUser {
            id: "6EA91A8D-e32e-41a1-b7bd-d2d185eed0e0".into(),
            upn: Some("Alice.Smith@contoso.onmicrosoft.com".into()),
            display_name: Some("Alice Smith".into()),
            mail: Some("alice@contoso.com".into()),
            department: Some("Finance".into()),
            job_title: Some("Controller".into()),
            account_enabled: Some(false),
            user_type: Some("Member".into()),
        }
    }

    #[test]
    fn matches_by_object_id_upn_mail_and_raw_actor() {
        let dir = DirectoryIndex::new(vec![alice()]);
        let by_uid = json!({"actor": {"user": {"uid": "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0"}}});
        let by_upn = json!({"actor": {"user": {"name": "alice.smith@CONTOSO.onmicrosoft.com", "uid": "1003BFFD9A0B1C2D"}}});
        let by_mail = json!({"actor": {"user": {"name": "Alice@contoso.com"}}});
        let by_raw = json!({"actor": {}, "unmapped": {"Actor": [{"ID": "x", "Type": 2}, {"ID": "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0", "Type": 2}]}});
        for e in [by_uid, by_upn, by_mail, by_raw] {
            assert_eq!(
                dir.actor_of(&e).map(|u| u.display_name.as_deref()),
                Some(Some("Alice Smith")),
                "{e}"
            );
        }
        assert!(
            dir.actor_of(&json!({"actor": {"user": {"name": "bob@contoso.com"}}}))
                .is_none()
        );
    }

    #[test]
    fn enrich_adds_and_never_replaces() {
        let dir = DirectoryIndex::new(vec![alice()]);
        let mut e = json!({"actor": {"user": {"name": "alice@contoso.com", "email_addr": "kept@x"}},
            "o365": {"content_id": "c"}});
        assert!(enrich(&mut e, &dir));
        let u = &e["actor"]["user"];
        assert_eq!(u["full_name"], "Alice Smith");
        assert_eq!(u["email_addr"], "kept@x");
        assert_eq!(u["uid_alt"], "6EA91A8D-e32e-41a1-b7bd-d2d185eed0e0");
        assert_eq!(u["org"]["ou_name"], "Finance");
        assert_eq!(u["name"], "alice@contoso.com");
        assert_eq!(e["o365"]["content_id"], "c");
        assert_eq!(
            e["o365"]["directory_user"],
            json!({"id": "6EA91A8D-e32e-41a1-b7bd-d2d185eed0e0", "display_name": "Alice Smith",
                "department": "Finance", "job_title": "Controller", "account_enabled": false,
                "user_type": "Member"})
        );
        let mut other = json!({"actor": {"user": {"name": "bob@contoso.com"}}});
        let before = other.clone();
        assert!(!enrich(&mut other, &dir));
        assert_eq!(other, before);
        let mut empty = before.clone();
        assert!(!enrich(&mut empty, &DirectoryIndex::default()));
        assert_eq!(empty, before);
    }
}
