//! Golden tests: one or more records per class, expected fields asserted one by one. Records
//! are the fact sheet's authored examples (microsoft-api.md §3) and real records from
//! `fixtures/` (see `fixtures/NOTICE.md`).

use super::*;

const A1_SIGN_IN: &str = r#"{"CreationTime":"2026-03-02T08:14:51","Id":"6b1f3c2e-93a4-4d0e-9b1c-2f6d8a7e4c10","Operation":"UserLoggedIn",
 "OrganizationId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","RecordType":15,"ResultStatus":"Succeeded",
 "UserKey":"0c7a1e5b-4d2f-4a8e-b6c3-9f1e2d3c4b5a","UserType":0,"Version":1,"Workload":"AzureActiveDirectory",
 "ClientIP":"203.0.113.24","ObjectId":"00000003-0000-0000-c000-000000000000","UserId":"alice@contoso.com",
 "AzureActiveDirectoryEventType":1,
 "ExtendedProperties":[{"Name":"ResultStatusDetail","Value":"Success"},
   {"Name":"UserAgent","Value":"Mozilla/5.0 (Windows NT 10.0; Win64; x64)"},
   {"Name":"UserAuthenticationMethod","Value":"1"},{"Name":"RequestType","Value":"OAuth2:Authorize"},
   {"Name":"KeepMeSignedIn","Value":"False"}],
 "ModifiedProperties":[],
 "Actor":[{"ID":"0c7a1e5b-4d2f-4a8e-b6c3-9f1e2d3c4b5a","Type":0},{"ID":"alice@contoso.com","Type":5}],
 "ActorContextId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","ActorIpAddress":"203.0.113.24",
 "InterSystemsId":"a1b2c3d4-0000-4000-8000-000000000001","IntraSystemId":"e5f6a7b8-0000-4000-8000-000000000002",
 "SupportTicketId":"","Target":[{"ID":"00000003-0000-0000-c000-000000000000","Type":0}],
 "TargetContextId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d",
 "ApplicationId":"4765445b-32c6-49b0-83e6-1d93765276ca",
 "DeviceProperties":[{"Name":"OS","Value":"Windows10"},{"Name":"BrowserType","Value":"Edge"},
   {"Name":"SessionId","Value":"8f0c2d9e-1111-4222-8333-944455566677"}],
 "ErrorCode":"0"}"#;

const A2_FAILED_SIGN_IN: &str = r#"{"CreationTime":"2026-03-02T08:20:03","Id":"0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a","Operation":"UserLoginFailed",
 "OrganizationId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","RecordType":15,"ResultStatus":"Failed",
 "UserKey":"0c7a1e5b-4d2f-4a8e-b6c3-9f1e2d3c4b5a","UserType":0,"Version":1,"Workload":"AzureActiveDirectory",
 "ClientIP":"198.51.100.77","ObjectId":"00000002-0000-0ff1-ce00-000000000000","UserId":"alice@contoso.com",
 "AzureActiveDirectoryEventType":1,
 "ExtendedProperties":[{"Name":"ResultStatusDetail","Value":"Success"},{"Name":"UserAgent","Value":"python-requests/2.31"},
   {"Name":"RequestType","Value":"OrgIdWsTrust2:process"}],
 "ModifiedProperties":[],"Actor":[{"ID":"alice@contoso.com","Type":5}],
 "ActorIpAddress":"198.51.100.77","Target":[{"ID":"00000002-0000-0ff1-ce00-000000000000","Type":0}],
 "ApplicationId":"a0c73c16-a7e3-4564-9a95-2bdf47383716","ErrorCode":"50126","LogonError":"InvalidUserNameOrPassword"}"#;

const A3_ADD_USER: &str = r#"{"CreationTime":"2026-03-02T09:01:44","Id":"7c6d5e4f-3a2b-4c1d-9e8f-7a6b5c4d3e2f","Operation":"Add user.",
 "OrganizationId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","RecordType":8,"ResultStatus":"Success",
 "UserKey":"1003BFFD8EC47CA6@contoso.com","UserType":0,"Version":1,"Workload":"AzureActiveDirectory",
 "ObjectId":"bob@contoso.com","UserId":"admin@contoso.com","AzureActiveDirectoryEventType":1,
 "ExtendedProperties":[{"Name":"additionalDetails","Value":"{}"}],
 "ModifiedProperties":[{"Name":"AccountEnabled","NewValue":"[true]","OldValue":"[]"}],
 "Actor":[{"ID":"admin@contoso.com","Type":5},{"ID":"1003BFFD8EC47CA6","Type":3}],
 "ActorContextId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d",
 "Target":[{"ID":"User_5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a","Type":2},{"ID":"bob@contoso.com","Type":5}],
 "TargetContextId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d"}"#;

const E1_MAIL_ITEMS_ACCESSED: &str = r#"{"CreationTime":"2026-03-02T10:12:40","Id":"2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b","Operation":"MailItemsAccessed",
 "OrganizationId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","RecordType":50,"ResultStatus":"Succeeded",
 "UserKey":"10032001A2B3C4D5","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.24",
 "UserId":"alice@contoso.com","AppId":"00000002-0000-0ff1-ce00-000000000000",
 "ClientAppId":"1fec8e78-bce4-4aaf-ab1b-5451cc387264","ClientIPAddress":"203.0.113.24",
 "ClientInfoString":"Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64)","ExternalAccess":false,
 "InternalLogonType":0,"LogonType":0,"LogonUserSid":"S-1-5-21-1111111111-2222222222-3333333333-4444",
 "MailboxGuid":"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d","MailboxOwnerSid":"S-1-5-21-1111111111-2222222222-3333333333-4444",
 "MailboxOwnerUPN":"alice@contoso.com","OrganizationName":"contoso.onmicrosoft.com",
 "OriginatingServer":"AM6PR03MB1234 (15.20.7000.000)","SessionId":"4d5e6f70-8192-4a3b-9c4d-5e6f708192a3",
 "OperationCount":2,
 "OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],
 "Folders":[{"Id":"LgAAAAB1c2VyZm9sZGVyaWQ","Path":"\\Inbox",
   "FolderItems":[{"InternetMessageId":"<AM6PR03MB1234.1@contoso.com>","SizeInBytes":48211},
                  {"InternetMessageId":"<AM6PR03MB1234.2@contoso.com>","SizeInBytes":9120}]}]}"#;

const E2_SYNC: &str = r#"{"CreationTime":"2026-03-02T10:30:05","Id":"5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d","Operation":"MailItemsAccessed",
 "OrganizationId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","RecordType":50,"ResultStatus":"Succeeded",
 "UserKey":"10032001A2B3C4D5","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"198.51.100.77",
 "UserId":"alice@contoso.com","ClientIPAddress":"198.51.100.77",
 "ClientInfoString":"Client=MSExchangeRPC","ExternalAccess":false,"LogonType":0,"InternalLogonType":0,
 "MailboxOwnerUPN":"alice@contoso.com","SessionId":"b0c1d2e3-f405-4617-8829-3a4b5c6d7e8f","OperationCount":1,
 "OperationProperties":[{"Name":"MailAccessType","Value":"Sync"},{"Name":"IsThrottled","Value":"False"}],
 "Folders":[{"Id":"LgAAAAB1c2VyZm9sZGVyaWQ","Path":"\\Inbox"}]}"#;

const E3_NEW_INBOX_RULE: &str = r#"{"CreationTime":"2026-03-02T11:05:19","Id":"8c9d0e1f-2a3b-4c4d-8e5f-6a7b8c9d0e1f","Operation":"New-InboxRule",
 "OrganizationId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","RecordType":1,"ResultStatus":"True",
 "UserKey":"10032001A2B3C4D5","UserType":2,"Version":1,"Workload":"Exchange","ClientIP":"198.51.100.77:51000",
 "ObjectId":"alice@contoso.com\\forward-all","UserId":"alice@contoso.com","ExternalAccess":false,
 "OrganizationName":"contoso.onmicrosoft.com","OriginatingServer":"AM6PR03MB1234 (15.20.7000.000)",
 "Parameters":[{"Name":"Name","Value":"forward-all"},{"Name":"ForwardTo","Value":"x@example.net"},
   {"Name":"StopProcessingRules","Value":"True"}]}"#;

const S1_FILE_ACCESSED: &str = r#"{"CreationTime":"2026-03-02T12:00:07","Id":"3b4c5d6e-7f80-4912-a3b4-c5d6e7f80912","Operation":"FileAccessed",
 "OrganizationId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","RecordType":6,"UserKey":"i:0h.f|membership|10032001a2b3c4d5@live.com",
 "UserType":0,"Version":1,"Workload":"SharePoint","ClientIP":"203.0.113.24","UserId":"alice@contoso.com",
 "ObjectId":"https://contoso.sharepoint.com/sites/Finance/Shared Documents/Budget 2026.xlsx",
 "CorrelationId":"a7b8c9d0-e1f2-4a3b-8c4d-5e6f7a8b9c0d","EventSource":"SharePoint","ItemType":"File",
 "ListId":"c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f","ListItemUniqueId":"d2e3f4a5-b6c7-4d8e-9f0a-1b2c3d4e5f6a",
 "Site":"e3f4a5b6-c7d8-4e9f-8a0b-1c2d3e4f5a6b","WebId":"f4a5b6c7-d8e9-4f0a-9b1c-2d3e4f5a6b7c",
 "UserAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64)","SiteUrl":"https://contoso.sharepoint.com/sites/Finance/",
 "SourceRelativeUrl":"Shared Documents","SourceFileName":"Budget 2026.xlsx","SourceFileExtension":"xlsx",
 "ApplicationId":"00000003-0000-0ff1-ce00-000000000000"}"#;

const S2_DOWNLOAD: &str = r#"{"CreationTime":"2026-03-02T12:03:41","Id":"4c5d6e7f-8091-4a2b-b3c4-d5e6f7081920","Operation":"FileDownloaded",
 "OrganizationId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","RecordType":6,"UserKey":"i:0h.f|membership|10032001a2b3c4d5@live.com",
 "UserType":0,"Version":1,"Workload":"OneDrive","ClientIP":"198.51.100.77","UserId":"alice@contoso.com",
 "ObjectId":"https://contoso-my.sharepoint.com/personal/alice_contoso_com/Documents/payroll.csv",
 "EventSource":"SharePoint","ItemType":"File","Site":"0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
 "SiteUrl":"https://contoso-my.sharepoint.com/personal/alice_contoso_com/","SourceRelativeUrl":"Documents",
 "SourceFileName":"payroll.csv","SourceFileExtension":"csv","UserAgent":"Microsoft SkyDriveSync 24.086.0428.0003"}"#;

const S3_SHARING_SET: &str = r#"{"CreationTime":"2026-03-02T12:10:15","Id":"5d6e7f80-9102-4b3c-a4d5-e6f708192a3b","Operation":"SharingSet",
 "OrganizationId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","RecordType":14,"UserKey":"i:0h.f|membership|10032001a2b3c4d5@live.com",
 "UserType":0,"Version":1,"Workload":"SharePoint","ClientIP":"203.0.113.24","UserId":"alice@contoso.com",
 "ObjectId":"https://contoso.sharepoint.com/sites/Finance/Shared Documents/Budget 2026.xlsx",
 "EventSource":"SharePoint","ItemType":"File","Site":"e3f4a5b6-c7d8-4e9f-8a0b-1c2d3e4f5a6b",
 "SiteUrl":"https://contoso.sharepoint.com/sites/Finance","SourceRelativeUrl":"Shared Documents",
 "SourceFileName":"Budget 2026.xlsx","SourceFileExtension":"xlsx",
 "TargetUserOrGroupName":"bob@contoso.com","TargetUserOrGroupType":"Member",
 "EventData":"<PermissionsGranted>Contribute</PermissionsGranted>","UniqueSharingId":"6e7f8091-a2b3-4c4d-b5e6-f708192a3b4c"}"#;

const D1_DLP_EXCHANGE: &str = r#"{"CreationTime":"2026-03-02T13:45:00","Id":"6e7f8091-a2b3-4c4d-b5e6-f708192a3b4d","Operation":"DlpRuleMatch",
 "OrganizationId":"3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d","RecordType":13,"UserKey":"DlpAgent","UserType":4,
 "Version":1,"Workload":"Exchange","ObjectId":"<AM6PR03MB1234.9@contoso.com>","UserId":"alice@contoso.com",
 "IncidentId":"f1e2d3c4-b5a6-4978-8c9d-0e1f2a3b4c5d","SensitiveInfoDetectionIsIncluded":false,
 "ExchangeMetaData":{"MessageID":"<AM6PR03MB1234.9@contoso.com>","From":"alice@contoso.com",
   "To":["partner@example.net"],"CC":[],"BCC":[],"Subject":"card list","Sent":"2026-03-02T13:44:51",
   "RecipientCount":1},
 "PolicyDetails":[{"PolicyId":"0f1e2d3c-4b5a-4697-8877-665544332211","PolicyName":"PCI outbound",
   "Rules":[{"RuleId":"11223344-5566-4778-8899-aabbccddeeff","RuleName":"Block >5 cards","Actions":["BlockAccess"],
     "Severity":"High","RuleMode":"Enforce",
     "ConditionsMatched":{"SensitiveInformation":[{"Confidence":85,"Count":7,"UniqueCount":7,
       "SensitiveType":"50842eb7-edc8-4019-85dd-5a5c1f2bb085","SensitiveInformationTypeName":"Credit Card Number",
       "SensitiveInformationDetailedClassificationAttributes":[{"Confidence":85,"Count":7,"IsMatch":true}]}]}}]}]}"#;

/// The real records of `fixtures/`, by `Id`.
fn fixture(id: &str) -> Value {
    let all = concat!(
        include_str!("../fixtures/blueteam0ps.ndjson"),
        include_str!("../fixtures/microsoft-docs.ndjson")
    );
    all.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).expect("fixture line is JSON"))
        .find(|r| r["Id"] == json!(id))
        .unwrap_or_else(|| panic!("no fixture {id}"))
}

fn norm_value(ct: ContentType, v: Value) -> Value {
    normalize(v, &ctx(ct)).event
}

// ----- 3002 Authentication ------------------------------------------------------------------

#[test]
fn golden_sign_in_success_a1() {
    let n = norm(ContentType::AzureActiveDirectory, A1_SIGN_IN);
    assert_eq!(n.class_uid, 3002);
    assert_eq!(
        n.record_id.as_deref(),
        Some("6b1f3c2e-93a4-4d0e-9b1c-2f6d8a7e4c10")
    );
    let e = &n.event;
    assert_head(e, 3002, 1);
    assert_eq!(e["type_uid"], json!(300201));
    assert_eq!(e["category_uid"], json!(3));
    assert_eq!(e["class_name"], json!("Authentication"));
    assert_eq!(e["activity_name"], json!("UserLoggedIn"));
    assert_eq!(e["time"], json!(ms_of(2026, 3, 2, 8, 14, 51)));
    assert_eq!(
        n.event_time.map(|t| t.timestamp_millis()),
        Some(ms_of(2026, 3, 2, 8, 14, 51))
    );
    assert_eq!(e["status_id"], json!(1));
    assert_eq!(e["status"], json!("Success"));
    assert_eq!(e["status_code"], json!("0"));
    assert_eq!(e["actor"]["user"]["name"], json!("alice@contoso.com"));
    assert_eq!(
        e["actor"]["user"]["uid"],
        json!("0c7a1e5b-4d2f-4a8e-b6c3-9f1e2d3c4b5a")
    );
    assert_eq!(e["actor"]["user"]["type_id"], json!(1));
    assert_eq!(e["actor"]["user"]["type"], json!("Regular"));
    assert_eq!(
        e["actor"]["app_uid"],
        json!("4765445b-32c6-49b0-83e6-1d93765276ca")
    );
    assert_eq!(e["user"]["name"], json!("alice@contoso.com"));
    assert_eq!(
        e["user"]["uid"],
        json!("0c7a1e5b-4d2f-4a8e-b6c3-9f1e2d3c4b5a")
    );
    assert_eq!(e["src_endpoint"]["ip"], json!("203.0.113.24"));
    assert!(e["src_endpoint"].get("port").is_none());
    assert_eq!(
        e["http_request"]["user_agent"],
        json!("Mozilla/5.0 (Windows NT 10.0; Win64; x64)")
    );
    assert_eq!(
        e["service"]["uid"],
        json!("00000003-0000-0000-c000-000000000000")
    );
    assert_eq!(e["service"]["name"], json!("Microsoft Graph"));
    assert_eq!(e["auth_protocol_id"], json!(6));
    assert_eq!(e["auth_protocol"], json!("OAUTH 2.0"));
    assert_eq!(e["device"]["os"]["name"], json!("Windows10"));
    assert_eq!(e["device"]["os"]["type_id"], json!(100));
    assert_eq!(
        e["session"]["uid"],
        json!("8f0c2d9e-1111-4222-8333-944455566677")
    );
    // Every-event fields.
    let m = &e["metadata"];
    assert_eq!(m["uid"], json!("6b1f3c2e-93a4-4d0e-9b1c-2f6d8a7e4c10"));
    assert_eq!(
        m["tenant_uid"],
        json!("3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d")
    );
    assert_eq!(
        m["product"]["feature"]["name"],
        json!("AzureActiveDirectory")
    );
    assert_eq!(m["logged_time"], json!(ms_of(2026, 3, 2, 12, 12, 30)));
    assert_eq!(m["processed_time"], json!(ms_of(2026, 3, 2, 12, 20, 0)));
    assert_eq!(m["log_name"], json!("Audit.AzureActiveDirectory"));
    assert_eq!(e["o365"]["record_type"], json!(15));
    assert_eq!(
        e["o365"]["record_type_name"],
        json!("AzureActiveDirectoryStsLogon")
    );
    assert_eq!(
        e["o365"]["content_id"],
        json!(ctx(ContentType::General).content_id)
    );
    assert!(e["o365"].get("time_source").is_none());
    // The raw record, whole.
    let raw: Value = serde_json::from_str(A1_SIGN_IN).unwrap();
    assert_eq!(e["unmapped"], raw);
}

#[test]
fn golden_sign_in_failure_a2() {
    let e = norm(ContentType::AzureActiveDirectory, A2_FAILED_SIGN_IN).event;
    assert_head(&e, 3002, 1);
    assert_eq!(e["status_id"], json!(2));
    assert_eq!(e["status"], json!("Failure"));
    assert_eq!(e["status_code"], json!("50126"));
    assert_eq!(e["status_detail"], json!("InvalidUserNameOrPassword"));
    assert_eq!(e["src_endpoint"]["ip"], json!("198.51.100.77"));
    assert_eq!(
        e["http_request"]["user_agent"],
        json!("python-requests/2.31")
    );
    assert_eq!(e["auth_protocol_id"], json!(99));
    assert_eq!(e["auth_protocol"], json!("OrgIdWsTrust2:process"));
    assert_eq!(e["service"]["name"], json!("Office 365 Exchange Online"));
    assert_eq!(e["time"], json!(ms_of(2026, 3, 2, 8, 20, 3)));
}

#[test]
fn user_login_failed_with_succeeded_status_is_a_failure() {
    let mut v: Value = serde_json::from_str(A2_FAILED_SIGN_IN).unwrap();
    v["ResultStatus"] = json!("Succeeded");
    v.as_object_mut().unwrap().remove("ErrorCode");
    let e = norm_value(ContentType::AzureActiveDirectory, v.clone());
    assert_eq!(e["status_id"], json!(2));
    assert_eq!(e["status_detail"], json!("InvalidUserNameOrPassword"));
    // Even with ErrorCode "0".
    v["ErrorCode"] = json!("0");
    let e = norm_value(ContentType::AzureActiveDirectory, v);
    assert_eq!(e["status_id"], json!(2));
}

#[test]
fn user_logged_in_with_error_code_is_a_failure() {
    let mut v: Value = serde_json::from_str(A1_SIGN_IN).unwrap();
    v["ErrorCode"] = json!("50074");
    v["LogonError"] = json!("UserStrongAuthClientAuthNRequiredInterrupt");
    let e = norm_value(ContentType::AzureActiveDirectory, v);
    assert_eq!(e["status_id"], json!(2));
    assert_eq!(e["status_code"], json!("50074"));
    assert_eq!(
        e["status_detail"],
        json!("UserStrongAuthClientAuthNRequiredInterrupt")
    );
}

#[test]
fn golden_real_sign_ins() {
    // Real UserLoggedIn: success via ErrorNumber "0", IPv6 client.
    let e = norm_value(
        ContentType::AzureActiveDirectory,
        fixture("9401f4f5-c86c-402d-a892-3a0b78392300"),
    );
    assert_head(&e, 3002, 1);
    assert_eq!(e["status_id"], json!(1));
    assert_eq!(e["src_endpoint"]["ip"], json!("2a09:bac1:820:8::1a:9c"));
    assert_eq!(
        e["actor"]["user"]["name"],
        json!("Lidia@contoso.onmicrosoft.com")
    );
    assert_eq!(e["time"], json!(ms_of(2023, 7, 12, 12, 38, 42)));
    assert_eq!(
        e["service"]["name"],
        json!("Windows Azure Active Directory")
    );
    // Real password-spray failure.
    let e = norm_value(
        ContentType::AzureActiveDirectory,
        fixture("71fafc2a-f5b7-42c6-9867-a8f36dae0300"),
    );
    assert_head(&e, 3002, 1);
    assert_eq!(e["status_id"], json!(2));
    assert_eq!(
        e["actor"]["user"]["name"],
        json!("Henrietta@contoso.onmicrosoft.com")
    );
    assert!(
        e["http_request"]["user_agent"]
            .as_str()
            .unwrap()
            .starts_with("python-requests")
    );
}

#[test]
fn golden_legacy_account_logon_rt9() {
    let e = norm_value(
        ContentType::AzureActiveDirectory,
        fixture("80c76bd2-9d81-4c57-a97a-accfc3443dca"),
    );
    assert_head(&e, 3002, 1);
    assert_eq!(e["status_id"], json!(2));
    assert_eq!(e["status_code"], json!("-2147217390"));
    assert!(
        e["status_detail"]
            .as_str()
            .unwrap()
            .contains("PP_E_BAD_PASSWORD")
    );
    assert_eq!(e["src_endpoint"]["ip"], json!("134.170.188.221"));
    assert_eq!(e["time"], json!(ms_of(2015, 6, 29, 20, 3, 19)));
    assert_eq!(
        e["o365"]["record_type_name"],
        json!("AzureActiveDirectoryAccountLogon")
    );
    let e = norm_value(
        ContentType::AzureActiveDirectory,
        fixture("4e655d3f-35fa-42e0-b050-264b2d255c7a"),
    );
    assert_eq!(e["status_id"], json!(1));
    assert_eq!(e["service"]["name"], json!("Exchange"));
}

// ----- 3001 / 3004 / 3005 / 3006 Entra directory --------------------------------------------

#[test]
fn golden_add_user_a3() {
    let n = norm(ContentType::AzureActiveDirectory, A3_ADD_USER);
    let e = &n.event;
    assert_head(e, 3001, 1);
    assert_eq!(e["class_name"], json!("Account Change"));
    assert_eq!(e["activity_name"], json!("Add user."));
    assert_eq!(e["status_id"], json!(1));
    assert_eq!(e["actor"]["user"]["name"], json!("admin@contoso.com"));
    assert_eq!(
        e["actor"]["user"]["uid"],
        json!("1003BFFD8EC47CA6@contoso.com")
    );
    assert_eq!(e["user"]["name"], json!("bob@contoso.com"));
    assert_eq!(
        e["user"]["uid"],
        json!("5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a")
    );
    assert_eq!(
        e["o365"]["modified_properties"]["AccountEnabled"],
        json!({"new": [true], "old": []})
    );
    assert_eq!(e["src_endpoint"], json!({}));
    assert_eq!(e["time"], json!(ms_of(2026, 3, 2, 9, 1, 44)));
    assert_eq!(
        e["metadata"]["uid"],
        json!("7c6d5e4f-3a2b-4c1d-9e8f-7a6b5c4d3e2f")
    );
}

#[test]
fn golden_directory_real_records() {
    let ad = ContentType::AzureActiveDirectory;
    // Add User. (Microsoft's own sample; note the capital U).
    let e = norm_value(ad, fixture("b567caf0-088e-4c1c-a4ea-633a1e3d66c8"));
    assert_head(&e, 3001, 1);
    assert_eq!(e["status_id"], json!(1)); // "success", lower-case
    assert_eq!(e["user"]["name"], json!("user001@contoso.onmicrosoft.com"));
    // Reset user password.
    let e = norm_value(ad, fixture("4d7e6990-ec4f-4cd5-9d76-a56b0e327e53"));
    assert_head(&e, 3001, 4);
    assert_eq!(e["user"]["name"], json!("vic@contoso.com"));
    assert_eq!(
        e["actor"]["user"]["name"],
        json!("stinger@contoso.onmicrosoft.com")
    );
    // Delete user.
    let e = norm_value(ad, fixture("f1cb450f-82f0-43a3-99ba-e2ace1b9e05b"));
    assert_head(&e, 3001, 6);
    // Disable Strong Authentication.
    let e = norm_value(ad, fixture("2787b9e4-6a7f-43c1-a5c7-8607d030ca1d"));
    assert_head(&e, 3001, 11);
    assert_eq!(
        e["user"]["uid"],
        json!("7dccacb0-c3ff-4b02-964b-dd04c5a8f9fe")
    );
    // Add member to role. → User Access Management, Assign Privileges.
    let e = norm_value(ad, fixture("4ae7e0d5-e96b-4f29-9557-7264d43722a8"));
    assert_head(&e, 3005, 1);
    assert_eq!(e["class_name"], json!("User Access Management"));
    assert_eq!(
        e["user"]["name"],
        json!("deltatango@contoso.onmicrosoft.com")
    );
    assert!(e["privileges"].as_array().unwrap().len() == 1);
    // Remove member from role. → Revoke Privileges, role name from OldValue.
    let e = norm_value(ad, fixture("7264385a-423f-4f70-86d7-2419968a924c"));
    assert_head(&e, 3005, 2);
    assert_eq!(e["privileges"], json!(["Company Administrator"]));
    assert_eq!(e["user"]["name"], json!("Alex@contoso.onmicrosoft.com"));
    assert_eq!(
        e["user"]["uid"],
        json!("a88ae17c-f562-4c1f-a377-8910b6847d76")
    );
    // Add application. → Entity Management, Create.
    let e = norm_value(ad, fixture("f4ca135c-2262-4b9e-9eea-7fb930007a4b"));
    assert_head(&e, 3004, 1);
    assert_eq!(e["entity"]["type"], json!("Application"));
    assert!(e["entity"]["data"].is_object());
    assert!(
        e["http_request"]["user_agent"]
            .as_str()
            .unwrap()
            .starts_with("Mozilla/5.0")
    );
}

#[test]
fn golden_group_membership() {
    let rec = json!({
        "CreationTime": "2026-03-02T09:30:00", "Id": "11111111-2222-4333-8444-555555555555",
        "Operation": "Add member to group.", "OrganizationId": TENANT, "RecordType": 8,
        "ResultStatus": "Success", "UserKey": "1003BFFD8EC47CA6@contoso.com", "UserType": 0,
        "Workload": "AzureActiveDirectory", "ObjectId": "bob@contoso.com", "UserId": "admin@contoso.com",
        "ModifiedProperties": [
            {"Name": "Group.ObjectID", "NewValue": "9d2f4c1a-0000-4000-8000-000000000001", "OldValue": ""},
            {"Name": "Group.DisplayName", "NewValue": "Finance Team", "OldValue": ""}
        ],
        "Target": [
            {"ID": "User_5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a", "Type": 2},
            {"ID": "bob@contoso.com", "Type": 5}
        ]
    });
    let e = norm_value(ContentType::AzureActiveDirectory, rec.clone());
    assert_head(&e, 3006, 3);
    assert_eq!(e["group"]["name"], json!("Finance Team"));
    assert_eq!(
        e["group"]["uid"],
        json!("9d2f4c1a-0000-4000-8000-000000000001")
    );
    assert_eq!(e["user"]["name"], json!("bob@contoso.com"));
    let mut removed = rec;
    removed["Operation"] = json!("Remove member from group.");
    let e = norm_value(ContentType::AzureActiveDirectory, removed);
    assert_head(&e, 3006, 4);
}

#[test]
fn golden_consent_and_app_role() {
    let rec = json!({
        "CreationTime": "2026-03-02T09:40:00", "Id": "21111111-2222-4333-8444-555555555555",
        "Operation": "Consent to application.", "OrganizationId": TENANT, "RecordType": 8,
        "ResultStatus": "Success", "UserKey": "1003BFFD8EC47CA6@contoso.com", "UserType": 0,
        "Workload": "AzureActiveDirectory", "ObjectId": "aa11bb22-0000-4000-8000-000000000001",
        "UserId": "alice@contoso.com",
        "ModifiedProperties": [
            {"Name": "ConsentContext.IsAdminConsent", "NewValue": "False", "OldValue": ""},
            {"Name": "ConsentAction.Permissions", "NewValue": "[] => [[Id: x, ClientId: y, Scope:  Mail.Read offline_access, CreatedDateTime: ]]; ", "OldValue": ""}
        ],
        "Target": [
            {"ID": "ServicePrincipal_aa11bb22-0000-4000-8000-000000000001", "Type": 2},
            {"ID": "PDF Converter Pro", "Type": 1}
        ]
    });
    let e = norm_value(ContentType::AzureActiveDirectory, rec);
    assert_head(&e, 3005, 1);
    assert_eq!(e["privileges"], json!(["Mail.Read", "offline_access"]));
    assert_eq!(e["user"]["name"], json!("PDF Converter Pro"));
    assert_eq!(e["user"]["type"], json!("ServicePrincipal"));
    assert_eq!(e["user"]["type_id"], json!(99));
}

// ----- Exchange -----------------------------------------------------------------------------

#[test]
fn golden_mail_items_accessed_e1_e2() {
    let e = norm(ContentType::Exchange, E1_MAIL_ITEMS_ACCESSED).event;
    assert_head(&e, 6003, 2);
    assert_eq!(e["api"]["operation"], json!("MailItemsAccessed"));
    assert_eq!(e["api"]["service"]["name"], json!("Exchange"));
    assert_eq!(e["status_id"], json!(1));
    assert_eq!(e["src_endpoint"]["ip"], json!("203.0.113.24"));
    assert_eq!(e["actor"]["user"]["name"], json!("alice@contoso.com"));
    assert_eq!(
        e["http_request"]["user_agent"],
        json!("Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64)")
    );
    assert_eq!(e["o365"]["mail_access_type"], json!("Bind"));
    assert_eq!(e["o365"]["is_throttled"], json!(false));
    assert_eq!(e["o365"]["operation_count"], json!(2));
    assert_eq!(e["o365"]["item_count"], json!(2));
    assert_eq!(e["o365"]["logon_type"], json!(0));
    assert_eq!(e["o365"]["non_owner_access"], json!(false));
    assert_eq!(e["resources"][0]["type"], json!("Mailbox"));
    assert_eq!(
        e["resources"][0]["uid"],
        json!("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
    );
    assert_eq!(e["resources"][0]["name"], json!("alice@contoso.com"));
    assert_eq!(e["resources"][1]["name"], json!("\\Inbox"));
    let e = norm(ContentType::Exchange, E2_SYNC).event;
    assert_head(&e, 6003, 2);
    assert_eq!(e["o365"]["mail_access_type"], json!("Sync"));
    assert_eq!(e["time"], json!(ms_of(2026, 3, 2, 10, 30, 5)));
}

#[test]
fn non_owner_mailbox_access_is_visible() {
    let mut v: Value = serde_json::from_str(E1_MAIL_ITEMS_ACCESSED).unwrap();
    v["UserId"] = json!("mallory@contoso.com");
    v["LogonType"] = json!("2"); // stringly
    let e = norm_value(ContentType::Exchange, v.clone());
    assert_eq!(e["o365"]["non_owner_access"], json!(true));
    assert_eq!(e["o365"]["logon_type"], json!(2));
    assert_eq!(e["o365"]["logon_type_name"], json!("Delegated"));
    assert_eq!(e["o365"]["mailbox_owner_upn"], json!("alice@contoso.com"));
    assert_eq!(e["actor"]["user"]["name"], json!("mallory@contoso.com"));
    // Owner logon type but another user: still non-owner.
    v["LogonType"] = json!(0);
    let e = norm_value(ContentType::Exchange, v);
    assert_eq!(e["o365"]["non_owner_access"], json!(true));
}

#[test]
fn golden_send_as_is_email_activity() {
    let rec = json!({
        "CreationTime": "2026-03-02T10:40:00", "Id": "31111111-2222-4333-8444-555555555555",
        "Operation": "SendAs", "OrganizationId": TENANT, "RecordType": 2, "ResultStatus": "Succeeded",
        "UserKey": "10032001A2B3C4D6", "UserType": 0, "Workload": "Exchange",
        "ClientIP": "[2001:db8::5]:443", "UserId": "mallory@contoso.com", "LogonType": 2,
        "MailboxOwnerUPN": "ceo@contoso.com", "SendAsUserSmtp": "ceo@contoso.com",
        "Item": {"Id": "RgAAAA", "InternetMessageId": "<abc@contoso.com>", "Subject": "Urgent: wire transfer today", "SizeInBytes": 4096}
    });
    let e = norm_value(ContentType::Exchange, rec);
    assert_head(&e, 4009, 1);
    assert_eq!(e["class_name"], json!("Email Activity"));
    assert_eq!(e["email"]["from"], json!("ceo@contoso.com"));
    assert_eq!(e["email"]["message_uid"], json!("<abc@contoso.com>"));
    assert_eq!(e["email"]["subject"], json!("Urgent: wire transfer today"));
    assert_eq!(e["email"]["size"], json!(4096));
    assert_eq!(e["direction_id"], json!(0));
    assert_eq!(e["src_endpoint"]["ip"], json!("2001:db8::5"));
    assert_eq!(e["src_endpoint"]["port"], json!(443));
    assert_eq!(e["o365"]["non_owner_access"], json!(true));
}

#[test]
fn golden_exchange_admin_e3() {
    let e = norm(ContentType::Exchange, E3_NEW_INBOX_RULE).event;
    assert_head(&e, 6003, 1);
    assert_eq!(e["api"]["operation"], json!("New-InboxRule"));
    assert_eq!(e["api"]["service"]["name"], json!("Exchange"));
    assert_eq!(
        e["api"]["request"]["data"],
        json!({"Name": "forward-all", "ForwardTo": "x@example.net", "StopProcessingRules": "True"})
    );
    assert_eq!(e["status_id"], json!(1)); // "True"
    assert_eq!(e["src_endpoint"]["ip"], json!("198.51.100.77"));
    assert_eq!(e["src_endpoint"]["port"], json!(51000));
    assert_eq!(e["actor"]["user"]["type_id"], json!(2));
    assert_eq!(e["actor"]["user"]["type"], json!("Admin"));
    assert_eq!(
        e["resources"][0]["uid"],
        json!("alice@contoso.com\\forward-all")
    );
    assert_eq!(e["resources"][0]["type"], json!("InboxRule"));
    assert_eq!(e["time"], json!(ms_of(2026, 3, 2, 11, 5, 19)));
    // A failed cmdlet.
    let mut v: Value = serde_json::from_str(E3_NEW_INBOX_RULE).unwrap();
    v["ResultStatus"] = json!("False");
    v["ErrorMessage"] = json!("The operation couldn't be performed.");
    let e = norm_value(ContentType::Exchange, v);
    assert_eq!(e["status_id"], json!(2));
    assert_eq!(
        e["status_detail"],
        json!("The operation couldn't be performed.")
    );
}

#[test]
fn golden_exchange_admin_real_records() {
    let ex = ContentType::Exchange;
    let e = norm_value(ex, fixture("97fc1f52-4cd1-498b-f05e-08db8b78efd7"));
    assert_head(&e, 6003, 1);
    assert_eq!(e["api"]["operation"], json!("Add-MailboxPermission"));
    assert_eq!(
        e["api"]["request"]["data"]["AccessRights"],
        json!("FullAccess")
    );
    assert_eq!(e["src_endpoint"]["ip"], json!("2a09:bac5:114:105::1a:9b"));
    assert_eq!(e["src_endpoint"]["port"], json!(54809));
    let e = norm_value(ex, fixture("20fd5006-645b-42be-e9de-08db592255ac"));
    assert_head(&e, 6003, 3);
    assert_eq!(
        e["api"]["request"]["data"]["AuditBypassEnabled"],
        json!("True")
    );
    assert_eq!(e["src_endpoint"]["ip"], json!("104.28.196.199"));
    assert_eq!(e["src_endpoint"]["port"], json!(56806));
    // Security & Compliance cmdlet (RecordType 18): Parameters is a string.
    let e = norm_value(
        ContentType::General,
        fixture("646c1d49-07ac-42aa-9fd9-bd165108c5fa"),
    );
    assert_head(&e, 6003, 4);
    assert!(
        e["api"]["request"]["data"]
            .as_str()
            .unwrap()
            .starts_with("-Identity")
    );
    assert_eq!(
        e["api"]["service"]["name"],
        json!("SecurityComplianceCenter")
    );
}

// ----- 6006 File Hosting --------------------------------------------------------------------

#[test]
fn golden_file_accessed_s1() {
    let e = norm(ContentType::SharePoint, S1_FILE_ACCESSED).event;
    assert_head(&e, 6006, 14);
    assert_eq!(e["class_name"], json!("File Hosting Activity"));
    assert_eq!(e["file"]["name"], json!("Budget 2026.xlsx"));
    assert_eq!(
        e["file"]["path"],
        json!("https://contoso.sharepoint.com/sites/Finance/Shared Documents/Budget 2026.xlsx")
    );
    assert_eq!(e["file"]["type_id"], json!(1));
    assert_eq!(e["file"]["type"], json!("File"));
    assert_eq!(e["file"]["ext"], json!("xlsx"));
    assert_eq!(
        e["file"]["uid"],
        json!("d2e3f4a5-b6c7-4d8e-9f0a-1b2c3d4e5f6a")
    );
    assert_eq!(
        e["o365"]["site_url"],
        json!("https://contoso.sharepoint.com/sites/Finance/")
    );
    assert_eq!(
        e["http_request"]["user_agent"],
        json!("Mozilla/5.0 (Windows NT 10.0; Win64; x64)")
    );
    assert_eq!(e["src_endpoint"]["ip"], json!("203.0.113.24"));
    assert_eq!(e["status_id"], json!(0)); // no ResultStatus
    assert_eq!(
        e["actor"]["user"]["uid"],
        json!("i:0h.f|membership|10032001a2b3c4d5@live.com")
    );
}

#[test]
fn golden_file_download_s2_and_sharing_s3() {
    let e = norm(ContentType::SharePoint, S2_DOWNLOAD).event;
    assert_head(&e, 6006, 2);
    assert_eq!(
        e["metadata"]["product"]["feature"]["name"],
        json!("OneDrive")
    );
    assert_eq!(e["file"]["ext"], json!("csv"));
    let e = norm(ContentType::SharePoint, S3_SHARING_SET).event;
    assert_head(&e, 6006, 12);
    assert_eq!(
        e["o365"]["sharing_target"],
        json!({"name": "bob@contoso.com", "type": "Member"})
    );
    assert_eq!(
        e["o365"]["sharing_event_data"],
        json!("<PermissionsGranted>Contribute</PermissionsGranted>")
    );
}

#[test]
fn golden_file_copy_has_result() {
    let mut v: Value = serde_json::from_str(S1_FILE_ACCESSED).unwrap();
    v["Operation"] = json!("FileCopied");
    v["DestinationRelativeUrl"] = json!("Shared Documents/Archive");
    v["DestinationFileName"] = json!("Budget 2026 (copy).xlsx");
    let e = norm_value(ContentType::SharePoint, v);
    assert_head(&e, 6006, 6);
    assert_eq!(e["file_result"]["name"], json!("Budget 2026 (copy).xlsx"));
    assert_eq!(e["file_result"]["ext"], json!("xlsx"));
    assert_eq!(
        e["file_result"]["path"],
        json!(
            "https://contoso.sharepoint.com/sites/Finance/Shared Documents/Archive/Budget 2026 (copy).xlsx"
        )
    );
}

// ----- 2004 Detection Finding (DLP) ---------------------------------------------------------

#[test]
fn golden_dlp_rule_match_d1() {
    let n = norm(ContentType::DlpAll, D1_DLP_EXCHANGE);
    assert_eq!(n.class_uid, 2004);
    let e = &n.event;
    assert_head(e, 2004, 1);
    assert_eq!(e["category_uid"], json!(2));
    assert_eq!(e["class_name"], json!("Detection Finding"));
    assert_eq!(e["severity_id"], json!(4)); // High
    assert_eq!(e["status_id"], json!(1)); // New
    assert_eq!(
        e["finding_info"]["uid"],
        json!("f1e2d3c4-b5a6-4978-8c9d-0e1f2a3b4c5d")
    );
    assert_eq!(
        e["finding_info"]["analytic"]["name"],
        json!("Block >5 cards")
    );
    assert_eq!(
        e["finding_info"]["analytic"]["uid"],
        json!("11223344-5566-4778-8899-aabbccddeeff")
    );
    assert_eq!(
        e["finding_info"]["analytic"]["category"],
        json!("PCI outbound")
    );
    assert_eq!(e["finding_info"]["analytic"]["type_id"], json!(1));
    assert!(
        e["finding_info"]["title"]
            .as_str()
            .unwrap()
            .contains("PCI outbound")
    );
    let d = &e["o365"]["dlp"];
    assert_eq!(
        d["policies"],
        json!([{"uid": "0f1e2d3c-4b5a-4697-8877-665544332211", "name": "PCI outbound"}])
    );
    assert_eq!(d["actions"], json!(["BlockAccess"]));
    assert_eq!(
        d["sensitive_information"],
        json!([{"name": "Credit Card Number", "count": 7}])
    );
    assert_eq!(d["sensitive_item_count"], json!(7));
    assert_eq!(e["resources"][0]["type"], json!("Email"));
    assert_eq!(
        e["resources"][0]["uid"],
        json!("<AM6PR03MB1234.9@contoso.com>")
    );
    assert_eq!(e["resources"][0]["name"], json!("card list"));
    assert_eq!(
        e["resources"][0]["data"]["to"],
        json!(["partner@example.net"])
    );
    assert_eq!(e["actor"]["user"]["name"], json!("alice@contoso.com"));
    assert_eq!(e["actor"]["user"]["type_id"], json!(3)); // System
    assert_eq!(e["time"], json!(ms_of(2026, 3, 2, 13, 45, 0)));
}

#[test]
fn golden_dlp_undo_closes_the_finding() {
    let mut v: Value = serde_json::from_str(D1_DLP_EXCHANGE).unwrap();
    v["Operation"] = json!("DlpRuleUndo");
    v["RecordType"] = json!(11);
    v["ExceptionInfo"] =
        json!({"Reason": "FalsePositive", "FalsePositive": true, "Justification": "test"});
    let e = norm_value(ContentType::DlpAll, v);
    assert_head(&e, 2004, 3);
    assert_eq!(e["status_id"], json!(3)); // Suppressed
    assert_eq!(e["status_detail"], json!("FalsePositive"));
    assert_eq!(e["o365"]["dlp"]["exception"]["false_positive"], json!(true));
}

// ----- 6003 API Activity: general workloads and unknowns ------------------------------------

#[test]
fn golden_teams_and_copilot() {
    let rec = json!({
        "CreationTime": "2026-03-02T14:00:00", "Id": "41111111-2222-4333-8444-555555555555",
        "Operation": "TeamCreated", "OrganizationId": TENANT, "RecordType": 25,
        "UserKey": "0c7a1e5b-4d2f-4a8e-b6c3-9f1e2d3c4b5a", "UserType": 0, "Workload": "MicrosoftTeams",
        "ClientIP": "::ffff:203.0.113.9", "UserId": "alice@contoso.com",
        "TeamName": "Équipe Marketing", "TeamGuid": "19:abc@thread.tacv2", "CommunicationType": "Team"
    });
    let e = norm_value(ContentType::General, rec);
    assert_head(&e, 6003, 1);
    assert_eq!(e["api"]["operation"], json!("TeamCreated"));
    assert_eq!(e["api"]["service"]["name"], json!("MicrosoftTeams"));
    assert_eq!(e["src_endpoint"]["ip"], json!("203.0.113.9"));
    assert_eq!(e["resources"][0]["name"], json!("Équipe Marketing"));
    assert_eq!(e["resources"][0]["uid"], json!("19:abc@thread.tacv2"));
    assert_eq!(e["o365"]["record_type_name"], json!("MicrosoftTeams"));
    let rec = json!({
        "CreationTime": "2026-03-02T14:05:00", "Id": "51111111-2222-4333-8444-555555555555",
        "Operation": "CopilotInteraction", "OrganizationId": TENANT, "RecordType": 261,
        "UserKey": "x", "UserType": 0, "Workload": "Copilot", "UserId": "alice@contoso.com"
    });
    let e = norm_value(ContentType::General, rec);
    assert_head(&e, 6003, 99);
    assert_eq!(e["o365"]["record_type_name"], json!("CopilotInteraction"));
}

#[test]
fn golden_ome_portal_real_record_is_api_activity() {
    let e = norm_value(
        ContentType::Exchange,
        fixture("a3500d45-6ab3-4971-a762-a01a846015d0"),
    );
    assert_head(&e, 6003, 2); // MessageAccess: Read
    assert_eq!(e["o365"]["record_type_name"], json!("OMEPortal"));
    assert_eq!(e["status_id"], json!(1));
    assert_eq!(
        e["o365"]["operation_properties"]["MailSubject"],
        json!("Support case 1234567")
    );
}

#[test]
fn unknown_record_type_and_operation_is_base_api_activity() {
    let raw = json!({
        "CreationTime": "2026-03-02T15:00:00", "Id": "61111111-2222-4333-8444-555555555555",
        "Operation": "ExperimentalSignalEmitted", "OrganizationId": TENANT, "RecordType": 999,
        "ResultStatus": "PartiallySucceeded", "UserKey": "k", "UserType": 5,
        "Workload": "PlatformTelemetry", "ClientIP": "192.0.2.1", "UserId": "svc@contoso.com",
        "FutureField": {"Nested": [1, 2, 3]}
    });
    let n = normalize(raw.clone(), &ctx(ContentType::General));
    assert_eq!(n.class_uid, 6003);
    let e = &n.event;
    assert_head(e, 6003, 99);
    assert_eq!(e["api"]["operation"], json!("ExperimentalSignalEmitted"));
    assert_eq!(e["api"]["service"]["name"], json!("PlatformTelemetry"));
    assert_eq!(e["status_id"], json!(99));
    assert_eq!(e["status"], json!("PartiallySucceeded"));
    assert_eq!(e["o365"]["record_type"], json!(999));
    assert_eq!(e["o365"]["record_type_name"], Value::Null);
    assert!(
        e["o365"]
            .as_object()
            .unwrap()
            .contains_key("record_type_name")
    );
    assert_eq!(e["actor"]["user"]["type"], json!("Application"));
    assert_eq!(e["actor"]["user"]["type_id"], json!(99));
    assert_eq!(e["unmapped"], raw);
}

// ----- Every-event rules --------------------------------------------------------------------

#[test]
fn creation_time_without_zone_is_utc() {
    for (s, want) in [
        ("2026-03-02T08:14:51", ms_of(2026, 3, 2, 8, 14, 51)),
        (
            "2026-03-02T08:14:51.123",
            ms_of(2026, 3, 2, 8, 14, 51) + 123,
        ),
        ("2026-03-02T08:14:51Z", ms_of(2026, 3, 2, 8, 14, 51)),
        ("2026-03-02T10:14:51+02:00", ms_of(2026, 3, 2, 8, 14, 51)),
    ] {
        let mut v: Value = serde_json::from_str(S1_FILE_ACCESSED).unwrap();
        v["CreationTime"] = json!(s);
        let n = normalize(v, &ctx(ContentType::SharePoint));
        assert_eq!(n.event["time"], json!(want), "{s}");
        assert_eq!(n.event_time.map(|t| t.timestamp_millis()), Some(want));
        assert!(n.event["o365"].get("time_source").is_none());
    }
}

#[test]
fn missing_or_garbage_time_falls_back_to_content_created() {
    let c = ctx(ContentType::SharePoint);
    for bad in [
        json!("garbage"),
        json!(null),
        json!(""),
        json!([1]),
        json!("0000-01-01T00:00:00"),
    ] {
        let mut v: Value = serde_json::from_str(S1_FILE_ACCESSED).unwrap();
        v["CreationTime"] = bad.clone();
        let n = normalize(v, &c);
        assert_eq!(
            n.event["time"],
            json!(c.content_created.timestamp_millis()),
            "{bad}"
        );
        assert_eq!(n.event_time, None);
        assert_eq!(n.event["o365"]["time_source"], json!("contentCreated"));
    }
    let mut v: Value = serde_json::from_str(S1_FILE_ACCESSED).unwrap();
    v.as_object_mut().unwrap().remove("CreationTime");
    let n = normalize(v, &c);
    assert_eq!(n.event["o365"]["time_source"], json!("contentCreated"));
}

#[test]
fn stringly_numbers() {
    let mut v: Value = serde_json::from_str(A1_SIGN_IN).unwrap();
    v["RecordType"] = json!("15");
    v["UserType"] = json!("2");
    let e = norm_value(ContentType::AzureActiveDirectory, v);
    assert_head(&e, 3002, 1);
    assert_eq!(e["o365"]["record_type"], json!(15));
    assert_eq!(e["actor"]["user"]["type_id"], json!(2));
    // UserType by name, RecordType as a float.
    let mut v: Value = serde_json::from_str(S1_FILE_ACCESSED).unwrap();
    v["RecordType"] = json!(6.0);
    v["UserType"] = json!("Guest");
    let e = norm_value(ContentType::SharePoint, v);
    assert_head(&e, 6006, 14);
    assert_eq!(e["actor"]["user"]["type"], json!("Guest"));
    // Numbers as strings the other way round: Id and UserKey as numbers.
    let mut v: Value = serde_json::from_str(S1_FILE_ACCESSED).unwrap();
    v["Id"] = json!(12345);
    v["UserKey"] = json!(1003);
    let n = normalize(v, &ctx(ContentType::SharePoint));
    assert_eq!(n.record_id.as_deref(), Some("12345"));
    assert_eq!(n.event["metadata"]["uid"], json!("12345"));
    assert_eq!(n.event["actor"]["user"]["uid"], json!("1003"));
}

#[test]
fn tenant_falls_back_to_context() {
    let mut v: Value = serde_json::from_str(S1_FILE_ACCESSED).unwrap();
    v.as_object_mut().unwrap().remove("OrganizationId");
    let e = norm_value(ContentType::SharePoint, v);
    assert_eq!(e["metadata"]["tenant_uid"], json!(TENANT));
}

#[test]
fn every_ip_form() {
    let cases: &[(Value, Option<&str>, Option<u16>)] = &[
        (json!("203.0.113.24"), Some("203.0.113.24"), None),
        (
            json!("198.51.100.7:51000"),
            Some("198.51.100.7"),
            Some(51000),
        ),
        (json!("2001:db8::1"), Some("2001:db8::1"), None),
        (json!("[2001:db8::1]:443"), Some("2001:db8::1"), Some(443)),
        (json!("::ffff:192.0.2.10"), Some("192.0.2.10"), None),
        (
            json!("[::ffff:192.0.2.10]:8443"),
            Some("192.0.2.10"),
            Some(8443),
        ),
        (json!("not an ip"), None, None),
        (json!(""), None, None),
        (json!(null), None, None),
        (json!(42), None, None),
    ];
    for (wire, ip, port) in cases {
        let mut v: Value = serde_json::from_str(S1_FILE_ACCESSED).unwrap();
        v["ClientIP"] = wire.clone();
        let e = norm_value(ContentType::SharePoint, v);
        assert_eq!(
            e["src_endpoint"].get("ip"),
            ip.map(|s| json!(s)).as_ref(),
            "{wire}"
        );
        assert_eq!(
            e["src_endpoint"].get("port"),
            port.map(|p| json!(p)).as_ref(),
            "{wire}"
        );
    }
}

#[test]
fn ip_preference_skips_junk_client_ip() {
    let mut v: Value = serde_json::from_str(E1_MAIL_ITEMS_ACCESSED).unwrap();
    v["ClientIP"] = json!("junk");
    v["ClientIPAddress"] = json!("198.51.100.9");
    let e = norm_value(ContentType::Exchange, v.clone());
    assert_eq!(e["src_endpoint"]["ip"], json!("198.51.100.9"));
    // ClientIP wins when valid.
    v["ClientIP"] = json!("203.0.113.1");
    let e = norm_value(ContentType::Exchange, v);
    assert_eq!(e["src_endpoint"]["ip"], json!("203.0.113.1"));
    // ActorIpAddress last.
    let mut v: Value = serde_json::from_str(A1_SIGN_IN).unwrap();
    v["ClientIP"] = json!(null);
    v["ActorIpAddress"] = json!("192.0.2.44");
    let e = norm_value(ContentType::AzureActiveDirectory, v);
    assert_eq!(e["src_endpoint"]["ip"], json!("192.0.2.44"));
}

#[test]
fn result_status_rules() {
    let cases = [
        ("Succeeded", 1),
        ("success", 1),
        ("TRUE", 1),
        ("Failed", 2),
        ("failure", 2),
        ("False", 2),
        ("PartiallySucceeded", 99),
        ("Weird", 99),
    ];
    for (rs, want) in cases {
        let mut v: Value = serde_json::from_str(E3_NEW_INBOX_RULE).unwrap();
        v["ResultStatus"] = json!(rs);
        let e = norm_value(ContentType::Exchange, v);
        assert_eq!(e["status_id"], json!(want), "{rs}");
    }
}

#[test]
fn records_that_are_not_objects_still_yield_events() {
    for v in [
        json!([1, 2]),
        json!("text"),
        json!(7),
        json!(null),
        json!(true),
    ] {
        let n = normalize(v.clone(), &ctx(ContentType::General));
        assert_eq!(n.class_uid, 6003);
        let e = &n.event;
        assert_head(e, 6003, 0);
        assert_eq!(e["raw_data"], json!(v.to_string()));
        assert!(
            e["status_detail"]
                .as_str()
                .unwrap()
                .contains("not an object")
        );
        assert_eq!(e["metadata"]["uid"], Value::Null);
        assert_eq!(n.record_id, None);
    }
}

#[test]
fn unparsable_input_keeps_raw_text_and_marker() {
    let c = ctx(ContentType::Exchange);
    let n = normalize_unparsable("{\"Id\": broken", "expected value at line 1 column 8", &c);
    assert_eq!(n.class_uid, 6003);
    let e = &n.event;
    assert_head(e, 6003, 0);
    assert_eq!(e["raw_data"], json!("{\"Id\": broken"));
    assert_eq!(
        e["o365"]["parse_error"],
        json!("expected value at line 1 column 8")
    );
    assert!(
        e["status_detail"]
            .as_str()
            .unwrap()
            .starts_with("unparsable record")
    );
    assert_eq!(e["time"], json!(c.content_created.timestamp_millis()));
    assert_eq!(e["o365"]["time_source"], json!("contentCreated"));
    assert_eq!(e["metadata"]["log_name"], json!("Audit.Exchange"));
}
