//! Microsoft Entra (Azure AD): sign-ins → Authentication; directory changes → Account Change,
//! Group Management, User Access Management or Entity Management.

use serde_json::{Map, Value};

use super::read::{
    int_of, list_field, modified_map, modified_text, non_empty_str, nv_get, nv_text,
    parse_embedded, str_field, text_of,
};
use super::tables::{
    self, ACCOUNT_CHANGE, AUTHENTICATION, Class, ENTITY_MANAGEMENT, GROUP_MANAGEMENT, USER_ACCESS,
};
use super::{Common, Mapped, Out, Status, put, put_obj, put_opt, status_from_result, user_obj};

/// `UserLoggedIn`/`UserLoginFailed` from Entra without the usual RecordType.
pub(super) fn is_sign_in_operation(c: &Common<'_>) -> bool {
    (c.op.eq_ignore_ascii_case("UserLoggedIn") || c.op.eq_ignore_ascii_case("UserLoginFailed"))
        && (c.workload_is("AzureActiveDirectory")
            || c.content_type == crate::model::ContentType::AzureActiveDirectory)
}

/// Sign-in status: `UserLoginFailed` is a failure whatever `ResultStatus` says; `ErrorCode`
/// (or `ErrorNumber`) `"0"` is a success, any other code a failure; legacy records use
/// `LoginStatus`; otherwise `ResultStatus`.
fn sign_in_status(c: &Common<'_>, ext: Option<&Value>) -> Status {
    let rec = c.rec;
    let logon_error = str_field(rec, "LogonError");
    let code = rec
        .get("ErrorCode")
        .and_then(text_of)
        .or_else(|| rec.get("ErrorNumber").and_then(text_of));
    let mut st = if let Some(code) = code {
        if code == "0" {
            let mut s = Status::success();
            s.code = Some(code);
            s
        } else {
            let mut s = Status::failure();
            s.detail = Some(logon_error.map_or_else(|| code.clone(), str::to_owned));
            s.code = Some(code);
            s
        }
    } else if let Some(ls) = rec.get("LoginStatus").and_then(int_of) {
        let mut s = if ls == 0 {
            Status::success()
        } else {
            let mut s = Status::failure();
            s.detail = nv_text(ext, "LoginError").or_else(|| logon_error.map(str::to_owned));
            s
        };
        s.code = Some(ls.to_string());
        s
    } else {
        let mut s = status_from_result(c.result_status);
        if s.id == 2 {
            s.detail = logon_error.map(str::to_owned);
        }
        s
    };
    if c.op.eq_ignore_ascii_case("UserLoginFailed") && st.id != 2 {
        st.id = 2;
        st.name = "Failure".into();
        st.detail = Some(logon_error.unwrap_or("UserLoginFailed").to_owned());
    }
    st
}

/// `RequestType` (`OAuth2:Authorize`, `Login:login`, …) → (`auth_protocol_id`, `auth_protocol`).
fn auth_protocol(request_type: &str) -> (u8, String) {
    let lower = request_type.to_ascii_lowercase();
    if lower.starts_with("oauth2") {
        (6, "OAUTH 2.0".to_owned())
    } else if lower.starts_with("saml") {
        (5, "SAML".to_owned())
    } else if lower.starts_with("oidc") || lower.starts_with("openid") {
        (4, "OpenID".to_owned())
    } else {
        (99, request_type.to_owned())
    }
}

/// Entra `DeviceProperties` `OS` → OCSF `os.type_id`.
fn os_type(os: &str) -> (u16, &'static str) {
    let l = os.to_ascii_lowercase();
    if l.starts_with("windows") {
        (100, "Windows")
    } else if l.starts_with("android") {
        (201, "Android")
    } else if l.starts_with("ios") || l.starts_with("iphone") {
        (301, "iOS")
    } else if l.starts_with("ipad") {
        (302, "iPadOS")
    } else if l.starts_with("mac") || l.starts_with("os x") {
        (300, "macOS")
    } else if l.starts_with("linux") || l.starts_with("ubuntu") || l.starts_with("chrome") {
        (200, "Linux")
    } else {
        (99, "Other")
    }
}

/// Sign-ins (RecordType 15, legacy 9) → 3002 Authentication, activity Logon.
pub(super) fn sign_in(c: &Common<'_>, out: &mut Out) -> Mapped {
    let rec = c.rec;
    let ext = list_field(rec, "ExtendedProperties");
    let ext = ext.as_deref();
    let dev = list_field(rec, "DeviceProperties");
    let dev = dev.as_deref();

    // The user who signed in (also the actor).
    let uid = rec
        .get("UserKey")
        .and_then(text_of)
        .or_else(|| id_of_type(rec.get("Actor"), 3).map(str::to_owned));
    put_obj(
        &mut out.ev,
        "user",
        user_obj(c.user_id, uid, rec.get("UserType")),
    );
    put_opt(&mut out.actor, "app_uid", str_field(rec, "ApplicationId"));

    // The resource signed in to.
    // Legacy (RecordType 9) records put the user in ObjectId, not the resource.
    let resource = str_field(rec, "ObjectId")
        .filter(|s| c.record_type != Some(9) && !s.eq_ignore_ascii_case("Unknown"))
        .or_else(|| {
            rec.get("Target")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|t| t.get("ID"))
                .and_then(non_empty_str)
        });
    let mut service = Map::new();
    put_opt(&mut service, "uid", resource);
    put_opt(
        &mut service,
        "name",
        resource
            .and_then(tables::resource_app_name)
            .or_else(|| str_field(rec, "Application"))
            .or_else(|| str_field(rec, "Client")),
    );
    put_obj(&mut out.ev, "service", service);

    if let Some(rt) = nv_get(ext, "RequestType").and_then(non_empty_str) {
        let (id, name) = auth_protocol(rt);
        put(&mut out.ev, "auth_protocol_id", id);
        put(&mut out.ev, "auth_protocol", name);
    }
    let ua = nv_get(ext, "UserAgent")
        .and_then(non_empty_str)
        .or_else(|| str_field(rec, "UserAgent"));
    if let Some(ua) = ua {
        let mut http = Map::new();
        put(&mut http, "user_agent", ua);
        put_obj(&mut out.ev, "http_request", http);
    }

    // Device.
    let mut device = Map::new();
    if let Some(os) = nv_get(dev, "OS").and_then(non_empty_str) {
        let (id, _) = os_type(os);
        let mut o = Map::new();
        put(&mut o, "name", os);
        put(&mut o, "type_id", id);
        put(&mut device, "os", Value::Object(o));
    }
    put_opt(
        &mut device,
        "name",
        nv_get(dev, "DisplayName").and_then(non_empty_str),
    );
    put_opt(
        &mut device,
        "uid",
        nv_get(dev, "Id").and_then(non_empty_str),
    );
    put_opt(
        &mut device,
        "is_compliant",
        nv_get(dev, "IsCompliant").and_then(super::read::bool_of),
    );
    if !device.is_empty() {
        put(&mut device, "type_id", 0);
        put_obj(&mut out.ev, "device", device);
    }
    if let Some(sid) = nv_get(dev, "SessionId").and_then(non_empty_str) {
        let mut session = Map::new();
        put(&mut session, "uid", sid);
        put_obj(&mut out.ev, "session", session);
    }

    let mut m = Mapped::new(AUTHENTICATION, 1, "Logon");
    m.status = Some(sign_in_status(c, ext));
    m
}

// ---------------------------------------------------------------------------------------------
// Directory changes
// ---------------------------------------------------------------------------------------------

/// The identities in an `Actor`/`Target` list.
#[derive(Default)]
struct Ids<'r> {
    upn: Option<&'r str>,
    puid: Option<&'r str>,
    guid: Option<&'r str>,
    kind: Option<&'r str>,
    name: Option<&'r str>,
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `Type` of an identity: number, stringly number or name (`UPN`, `PUID`, …).
fn identity_type(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    int_of(v).or_else(|| {
        let s = non_empty_str(v)?;
        ["Claim", "Name", "Other", "PUID", "SPN", "UPN"]
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .and_then(|p| i64::try_from(p).ok())
    })
}

fn ids(list: Option<&Value>) -> Ids<'_> {
    let mut out = Ids::default();
    let Some(Value::Array(a)) = list else {
        return out;
    };
    for e in a {
        let Some(id) = e.get("ID").or_else(|| e.get("Id")).and_then(non_empty_str) else {
            continue;
        };
        match identity_type(e.get("Type")) {
            Some(5) => {
                out.upn.get_or_insert(id);
            }
            Some(3) => {
                out.puid.get_or_insert(id);
            }
            Some(1) => {
                out.name.get_or_insert(id);
            }
            _ => {
                if is_guid(id) {
                    out.guid.get_or_insert(id);
                } else if let Some((kind, rest)) = id.split_once('_')
                    && is_guid(rest)
                {
                    out.kind.get_or_insert(kind);
                    out.guid.get_or_insert(rest);
                } else if id.bytes().all(|b| b.is_ascii_alphabetic()) {
                    out.kind.get_or_insert(id);
                } else if id.contains('@') {
                    out.upn.get_or_insert(id);
                }
            }
        }
    }
    out
}

/// The `ID` of the first identity of `ty` in a list.
fn id_of_type(list: Option<&Value>, ty: i64) -> Option<&str> {
    list?.as_array()?.iter().find_map(|e| {
        (identity_type(e.get("Type")) == Some(ty))
            .then(|| e.get("ID").and_then(non_empty_str))
            .flatten()
    })
}

/// Activity of a directory operation.
struct Decision {
    class: Class,
    activity_id: u32,
    activity: &'static str,
}

const fn d(class: Class, activity_id: u32, activity: &'static str) -> Decision {
    Decision {
        class,
        activity_id,
        activity,
    }
}

/// Entity Management activity from the verb of an operation.
fn entity_verb(op: &str) -> Decision {
    let first = op.split(' ').next().unwrap_or("");
    match first {
        "add" | "create" | "new" | "register" => d(ENTITY_MANAGEMENT, 1, "Create"),
        "get" | "read" | "list" | "view" => d(ENTITY_MANAGEMENT, 2, "Read"),
        "update" | "set" | "change" | "modify" | "enable" | "disable" | "restore" | "reset" => {
            d(ENTITY_MANAGEMENT, 3, "Update")
        }
        "delete" | "remove" | "hard" => d(ENTITY_MANAGEMENT, 4, "Delete"),
        _ => d(ENTITY_MANAGEMENT, 99, "Other"),
    }
}

/// Operation (lower-case, no trailing dot) → class and activity.
fn classify(op: &str, category: Option<&str>, rec: &Map<String, Value>) -> Decision {
    let mods = rec.get("ModifiedProperties");
    match op {
        "add user" => d(ACCOUNT_CHANGE, 1, "Create"),
        "delete user" | "hard delete user" => d(ACCOUNT_CHANGE, 6, "Delete"),
        "reset user password"
        | "reset password (by admin)"
        | "reset password (self-service)"
        | "set force change user password" => d(ACCOUNT_CHANGE, 4, "Password Reset"),
        "change user password" | "change password (self-service)" => {
            d(ACCOUNT_CHANGE, 3, "Password Change")
        }
        "disable account" => d(ACCOUNT_CHANGE, 5, "Disable"),
        "enable account" => d(ACCOUNT_CHANGE, 2, "Enable"),
        "disable strong authentication"
        | "user deleted security info"
        | "admin deleted security info" => d(ACCOUNT_CHANGE, 11, "MFA Factor Disable"),
        "enable strong authentication"
        | "user registered security info"
        | "user registered all required security info"
        | "admin registered security info" => d(ACCOUNT_CHANGE, 10, "MFA Factor Enable"),
        "update user" => match modified_text(mods, "AccountEnabled").as_deref() {
            Some(v) if v.eq_ignore_ascii_case("false") => d(ACCOUNT_CHANGE, 5, "Disable"),
            Some(v) if v.eq_ignore_ascii_case("true") => d(ACCOUNT_CHANGE, 2, "Enable"),
            _ => d(ACCOUNT_CHANGE, 99, "Other"),
        },
        "add member to group" => d(GROUP_MANAGEMENT, 3, "Add User"),
        "remove member from group" => d(GROUP_MANAGEMENT, 4, "Remove User"),
        "add group" => d(GROUP_MANAGEMENT, 6, "Create"),
        "delete group" | "hard delete group" => d(GROUP_MANAGEMENT, 5, "Delete"),
        "add owner to group" => d(GROUP_MANAGEMENT, 1, "Assign Privileges"),
        "remove owner from group" => d(GROUP_MANAGEMENT, 2, "Revoke Privileges"),
        "add app role assignment to service principal"
        | "add app role assignment grant to user"
        | "add delegated permission grant"
        | "consent to application" => d(USER_ACCESS, 1, "Assign Privileges"),
        "remove app role assignment from service principal"
        | "remove app role assignment from user"
        | "remove delegated permission grant"
        | "revoke consent" => d(USER_ACCESS, 2, "Revoke Privileges"),
        _ if op.starts_with("add ") && op.ends_with(" to role") => {
            d(USER_ACCESS, 1, "Assign Privileges")
        }
        _ if op.starts_with("remove ") && op.ends_with(" from role") => {
            d(USER_ACCESS, 2, "Revoke Privileges")
        }
        _ if op.ends_with(" user") || op.contains(" user ") => d(ACCOUNT_CHANGE, 99, "Other"),
        _ if op.ends_with(" group") => d(GROUP_MANAGEMENT, 99, "Other"),
        _ => match category {
            Some(c) if c.eq_ignore_ascii_case("User") => d(ACCOUNT_CHANGE, 99, "Other"),
            Some(c) if c.eq_ignore_ascii_case("Group") => d(GROUP_MANAGEMENT, 99, "Other"),
            _ => entity_verb(op),
        },
    }
}

/// `Scope:` of a `ConsentAction.Permissions` text, as privileges.
fn consent_scopes(text: &str) -> Vec<Value> {
    let Some((_, rest)) = text.split_once("Scope:") else {
        return Vec::new();
    };
    let scope = rest.split(',').next().unwrap_or("");
    scope
        .split_whitespace()
        .map(|s| Value::String(s.to_owned()))
        .collect()
}

/// Directory changes (RecordType 8).
pub(super) fn directory(c: &Common<'_>, out: &mut Out) -> Mapped {
    let rec = c.rec;
    let op_lc = c.op.trim().trim_end_matches('.').to_ascii_lowercase();
    let ext = list_field(rec, "ExtendedProperties");
    let ext = ext.as_deref();
    let category = nv_get(ext, "extendedAuditEventCategory").and_then(non_empty_str);
    let decision = classify(&op_lc, category, rec);
    let mods = rec.get("ModifiedProperties");
    let target = ids(rec.get("Target"));
    let object_id = str_field(rec, "ObjectId");

    // The actor's PUID when UserKey is absent.
    if out
        .actor
        .get("user")
        .and_then(|u| u.get("uid"))
        .is_none_or(Value::is_null)
        && let Some(puid) = ids(rec.get("Actor")).puid
        && let Some(Value::Object(u)) = out.actor.get_mut("user")
    {
        put(u, "uid", puid);
    }

    // User agent from additionalDetails ({"User-Agent": …}).
    if let Some(ua) = nv_get(ext, "additionalDetails")
        .and_then(non_empty_str)
        .and_then(parse_embedded)
        .and_then(|v| {
            v.get("User-Agent")
                .or_else(|| v.get("UserAgent"))
                .and_then(non_empty_str)
                .map(str::to_owned)
        })
    {
        let mut http = Map::new();
        put(&mut http, "user_agent", ua);
        put_obj(&mut out.ev, "http_request", http);
    }

    // The target user (for Account Change, Group Management, User Access Management).
    let target_user = || {
        let mut u = Map::new();
        put_opt(&mut u, "name", target.upn.or(object_id).or(target.name));
        put_opt(&mut u, "uid", target.guid.or(target.puid));
        if let Some(kind) = target.kind.filter(|k| !k.eq_ignore_ascii_case("User")) {
            put(&mut u, "type", kind);
            put(&mut u, "type_id", 99);
        }
        u
    };

    let mut modified_in_o365 = true;
    match decision.class.uid {
        3001 => {
            put_obj(&mut out.ev, "user", target_user());
        }
        3006 => {
            let mut group = Map::new();
            let group_name = modified_text(mods, "Group.DisplayName");
            let group_uid = modified_text(mods, "Group.ObjectID");
            if decision.activity_id == 3 || decision.activity_id == 4 {
                put_opt(&mut group, "name", group_name);
                put_opt(&mut group, "uid", group_uid);
                put_obj(&mut out.ev, "user", target_user());
            } else {
                put_opt(
                    &mut group,
                    "name",
                    group_name
                        .or_else(|| modified_text(mods, "DisplayName"))
                        .or_else(|| target.name.map(str::to_owned))
                        .or_else(|| object_id.map(str::to_owned)),
                );
                put_opt(
                    &mut group,
                    "uid",
                    group_uid.or_else(|| target.guid.map(str::to_owned)),
                );
                if decision.activity_id == 1 || decision.activity_id == 2 {
                    put_obj(&mut out.ev, "user", target_user());
                }
            }
            if group.is_empty() {
                put_opt(&mut group, "name", object_id);
            }
            put(&mut out.ev, "group", Value::Object(group));
        }
        3005 => {
            let mut privileges: Vec<Value> = Vec::new();
            if let Some(role) = modified_text(mods, "Role.DisplayName") {
                privileges.push(Value::String(role));
            }
            if let Some(app_role) = modified_text(mods, "AppRole.Value") {
                privileges.push(Value::String(app_role));
            }
            if let Some(perm) = modified_text(mods, "ConsentAction.Permissions") {
                privileges.extend(consent_scopes(&perm));
            }
            if let Some(scope) = modified_text(mods, "DelegatedPermissionGrant.Scope") {
                privileges.extend(consent_scopes(&format!("Scope: {scope}")));
            }
            // The principal that gained or lost the privilege.
            let mut user =
                if let Some(sp_name) = modified_text(mods, "ServicePrincipal.DisplayName") {
                    let mut u = Map::new();
                    put(&mut u, "name", sp_name);
                    put_opt(
                        &mut u,
                        "uid",
                        modified_text(mods, "ServicePrincipal.ObjectID"),
                    );
                    put(&mut u, "type", "ServicePrincipal");
                    put(&mut u, "type_id", 99);
                    u
                } else {
                    target_user()
                };
            if op_lc == "consent to application" {
                user = Map::new();
                put_opt(
                    &mut user,
                    "name",
                    target.name.or(object_id).map(str::to_owned),
                );
                put_opt(&mut user, "uid", target.guid.or(object_id));
                put(&mut user, "type", target.kind.unwrap_or("ServicePrincipal"));
                put(&mut user, "type_id", 99);
            }
            put(&mut out.ev, "user", Value::Object(user));
            put(&mut out.ev, "privileges", Value::Array(privileges));
            if op_lc.contains("app role") {
                let mut res = Map::new();
                put_opt(&mut res, "name", target.name);
                put_opt(&mut res, "uid", target.guid);
                put_opt(&mut res, "type", target.kind);
                put_obj(&mut out.ev, "resource", res);
            }
        }
        _ => {
            // Entity Management: the changed directory object.
            let mut entity = Map::new();
            put_opt(
                &mut entity,
                "name",
                modified_text(mods, "DisplayName")
                    .or_else(|| target.name.map(str::to_owned))
                    .or_else(|| target.upn.map(str::to_owned))
                    .or_else(|| object_id.map(str::to_owned)),
            );
            put_opt(&mut entity, "uid", target.guid.or(object_id));
            put_opt(&mut entity, "type", target.kind.or(category));
            if let Some(m) = modified_map(mods) {
                put(&mut entity, "data", Value::Object(m));
                modified_in_o365 = false;
            }
            if entity.is_empty() {
                put(&mut entity, "name", c.op);
            }
            put(&mut out.ev, "entity", Value::Object(entity));
        }
    }
    if modified_in_o365 && let Some(m) = modified_map(mods) {
        put_obj(&mut out.o365, "modified_properties", m);
    }
    Mapped::new(decision.class, decision.activity_id, decision.activity)
}
