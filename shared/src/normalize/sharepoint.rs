//! SharePoint and OneDrive → File Hosting Activity.

use serde_json::{Map, Value};

use super::read::{int_field, non_empty_str, str_field};
use super::tables::FILE_HOSTING;
use super::{Common, Mapped, Out, put, put_obj, put_opt};
use crate::model::ContentType;

/// SharePoint/OneDrive record types, workloads, or the `Audit.SharePoint` content type.
pub(super) fn applies(c: &Common<'_>) -> bool {
    matches!(
        c.record_type,
        Some(4 | 6 | 7 | 14 | 36 | 37 | 54 | 55 | 56 | 102)
    ) || c.workload_is("SharePoint")
        || c.workload_is("OneDrive")
        || (c.content_type == ContentType::SharePoint && c.record_type.is_none())
}

/// Operation → File Hosting activity (OCSF 1.1.0 ids).
pub(super) fn activity(op: &str) -> (u32, &'static str) {
    const TABLE: &[(&[&str], u32, &str)] = &[
        (
            &[
                "FileUploaded",
                "FileSyncUploadedFull",
                "FileSyncUploadedPartial",
                "FileUploadedPartial",
            ],
            1,
            "Upload",
        ),
        (
            &[
                "FileDownloaded",
                "FileSyncDownloadedFull",
                "FileSyncDownloadedPartial",
            ],
            2,
            "Download",
        ),
        (
            &[
                "FileModified",
                "FileModifiedExtended",
                "FileVersionsAllDeleted",
                "PageUpdated",
            ],
            3,
            "Update",
        ),
        (
            &[
                "FileDeleted",
                "FileDeletedFirstStageRecycleBin",
                "FileDeletedSecondStageRecycleBin",
                "FileRecycled",
                "FileVersionRecycled",
                "FolderDeleted",
                "FolderDeletedFirstStageRecycleBin",
                "FolderDeletedSecondStageRecycleBin",
                "FolderRecycled",
                "PageDeleted",
            ],
            4,
            "Delete",
        ),
        (&["FileRenamed", "FolderRenamed"], 5, "Rename"),
        (&["FileCopied", "FolderCopied"], 6, "Copy"),
        (&["FileMoved", "FolderMoved"], 7, "Move"),
        (
            &["FileRestored", "FolderRestored", "FileVersionRestored"],
            8,
            "Restore",
        ),
        (&["FilePreviewed"], 9, "Preview"),
        (&["FileCheckedOut", "LockRecord"], 10, "Lock"),
        (
            &["FileCheckedIn", "FileCheckOutDiscarded", "UnlockRecord"],
            11,
            "Unlock",
        ),
        (
            &[
                "SharingSet",
                "SharingInvitationCreated",
                "SharingInvitationAccepted",
                "AnonymousLinkCreated",
                "AnonymousLinkUpdated",
                "CompanyLinkCreated",
                "SecureLinkCreated",
                "SecureLinkUpdated",
                "AddedToSecureLink",
                "AddedToGroup",
                "AccessRequestApproved",
                "SharingPolicyChanged",
            ],
            12,
            "Share",
        ),
        (
            &[
                "SharingRevoked",
                "SharingInvitationRevoked",
                "AnonymousLinkRemoved",
                "CompanyLinkRemoved",
                "SecureLinkDeleted",
                "RemovedFromSecureLink",
                "RemovedFromGroup",
                "SharingInheritanceBroken",
            ],
            13,
            "Unshare",
        ),
        (
            &[
                "FileAccessed",
                "FileAccessedExtended",
                "PageViewed",
                "PageViewedExtended",
                "AnonymousLinkUsed",
                "CompanyLinkUsed",
                "SecureLinkUsed",
                "ClientViewSignaled",
            ],
            14,
            "Open",
        ),
    ];
    TABLE
        .iter()
        .find(|(ops, _, _)| ops.iter().any(|o| o.eq_ignore_ascii_case(op)))
        .map_or((99, "Other"), |(_, id, caption)| (*id, *caption))
}

/// `ItemType` (string or number) → (`file.type_id`, `file.type`).
fn file_type(v: Option<&Value>) -> Option<(u8, String)> {
    let v = v?;
    let name = match v {
        Value::Number(n) => match n.as_i64()? {
            1 => "File",
            5 => "Folder",
            6 => "Web",
            7 => "Site",
            8 => "Tenant",
            9 => "DocumentLibrary",
            11 => "Page",
            _ => return Some((0, "Unknown".to_owned())),
        }
        .to_owned(),
        _ => non_empty_str(v)?.to_owned(),
    };
    let id = if name.eq_ignore_ascii_case("File") || name.eq_ignore_ascii_case("Page") {
        1
    } else if name.eq_ignore_ascii_case("Folder") {
        2
    } else {
        99
    };
    Some((id, name))
}

/// Joins URL parts with single slashes.
fn join(parts: &[&str]) -> String {
    let mut out = String::new();
    for p in parts.iter().filter(|p| !p.is_empty()) {
        if out.is_empty() {
            out.push_str(p.trim_end_matches('/'));
        } else {
            out.push('/');
            out.push_str(p.trim_matches('/'));
        }
    }
    out
}

/// The last path segment of a URL or path.
fn last_segment(p: &str) -> &str {
    p.trim_end_matches('/')
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(p)
}

/// The extension of a file name (without dot), when it has one.
fn ext_of(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty() && ext.len() <= 16 && !ext.contains(['/', ' ']))
        .then_some(ext)
}

/// SharePoint/OneDrive → 6006 File Hosting Activity.
pub(super) fn map(c: &Common<'_>, out: &mut Out) -> Mapped {
    let rec = c.rec;
    let site = str_field(rec, "SiteUrl");
    let rel = str_field(rec, "SourceRelativeUrl");
    let object = str_field(rec, "ObjectId");

    // The file (or folder, page, site) acted on.
    let mut file = Map::new();
    let name = str_field(rec, "SourceFileName").or_else(|| object.map(last_segment));
    put_opt(&mut file, "name", name);
    let path =
        object
            .map(str::to_owned)
            .or_else(|| match (site, rel, str_field(rec, "SourceFileName")) {
                (Some(s), r, n) => Some(join(&[s, r.unwrap_or(""), n.unwrap_or("")])),
                _ => None,
            });
    put_opt(&mut file, "path", path);
    let (type_id, type_name) =
        file_type(rec.get("ItemType")).unwrap_or_else(|| (0, "Unknown".to_owned()));
    put(&mut file, "type_id", type_id);
    put(&mut file, "type", type_name);
    put_opt(
        &mut file,
        "ext",
        str_field(rec, "SourceFileExtension").or_else(|| name.and_then(ext_of)),
    );
    put_opt(&mut file, "uid", str_field(rec, "ListItemUniqueId"));
    put_opt(&mut file, "size", int_field(rec, "FileSizeBytes"));
    if file.get("name").is_none() {
        put(&mut file, "name", c.op);
    }
    put(&mut out.ev, "file", Value::Object(file));

    // Copy/move/rename: the resulting file.
    if let Some(dest_name) = str_field(rec, "DestinationFileName") {
        let mut result = Map::new();
        put(&mut result, "name", dest_name);
        let dest_rel = str_field(rec, "DestinationRelativeUrl").unwrap_or("");
        if let Some(s) = site {
            put(&mut result, "path", join(&[s, dest_rel, dest_name]));
        }
        put_opt(
            &mut result,
            "ext",
            str_field(rec, "DestinationFileExtension").or_else(|| ext_of(dest_name)),
        );
        put(&mut result, "type_id", 1);
        put(&mut result, "type", "File");
        put(&mut out.ev, "file_result", Value::Object(result));
    }

    if let Some(ua) = str_field(rec, "UserAgent") {
        let mut http = Map::new();
        put(&mut http, "user_agent", ua);
        put_obj(&mut out.ev, "http_request", http);
    }

    let o = &mut out.o365;
    put_opt(o, "site_url", site);
    if let Some(target) = str_field(rec, "TargetUserOrGroupName") {
        let mut t = Map::new();
        put(&mut t, "name", target);
        put_opt(&mut t, "type", str_field(rec, "TargetUserOrGroupType"));
        put(o, "sharing_target", Value::Object(t));
    }
    put_opt(o, "sharing_event_data", str_field(rec, "EventData"));

    let (id, caption) = activity(c.op);
    Mapped::new(FILE_HOSTING, id, caption)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_helpers() {
        assert_eq!(
            join(&[
                "https://c.sharepoint.com/sites/F/",
                "Shared Documents",
                "a.xlsx"
            ]),
            "https://c.sharepoint.com/sites/F/Shared Documents/a.xlsx"
        );
        assert_eq!(join(&["https://x/", "", "b"]), "https://x/b");
        assert_eq!(last_segment("https://x/a/b.docx"), "b.docx");
        assert_eq!(last_segment("https://x/a/"), "a");
        assert_eq!(ext_of("Budget 2026.xlsx"), Some("xlsx"));
        assert_eq!(ext_of(".bashrc"), None);
        assert_eq!(ext_of("noext"), None);
    }

    #[test]
    fn activities() {
        assert_eq!(activity("FileUploaded"), (1, "Upload"));
        assert_eq!(activity("filedownloaded"), (2, "Download"));
        assert_eq!(activity("SharingSet"), (12, "Share"));
        assert_eq!(activity("SharingRevoked"), (13, "Unshare"));
        assert_eq!(activity("FileAccessed"), (14, "Open"));
        assert_eq!(activity("FolderCreated"), (99, "Other"));
    }
}
