//! Fixed tables: OCSF 1.1.0 classes, Microsoft enums (fact sheet §3.2, §3.3, §3.5).

/// An OCSF event class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Class {
    pub uid: u32,
    pub name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
}

const IAM: &str = "Identity & Access Management";

/// 2004 Detection Finding (Findings).
pub(super) const DETECTION_FINDING: Class = Class {
    uid: 2004,
    name: "Detection Finding",
    category_uid: 2,
    category_name: "Findings",
};
/// 3001 Account Change.
pub(super) const ACCOUNT_CHANGE: Class = Class {
    uid: 3001,
    name: "Account Change",
    category_uid: 3,
    category_name: IAM,
};
/// 3002 Authentication.
pub(super) const AUTHENTICATION: Class = Class {
    uid: 3002,
    name: "Authentication",
    category_uid: 3,
    category_name: IAM,
};
/// 3004 Entity Management.
pub(super) const ENTITY_MANAGEMENT: Class = Class {
    uid: 3004,
    name: "Entity Management",
    category_uid: 3,
    category_name: IAM,
};
/// 3005 User Access Management.
pub(super) const USER_ACCESS: Class = Class {
    uid: 3005,
    name: "User Access Management",
    category_uid: 3,
    category_name: IAM,
};
/// 3006 Group Management.
pub(super) const GROUP_MANAGEMENT: Class = Class {
    uid: 3006,
    name: "Group Management",
    category_uid: 3,
    category_name: IAM,
};
/// 4009 Email Activity (Network Activity).
pub(super) const EMAIL_ACTIVITY: Class = Class {
    uid: 4009,
    name: "Email Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
/// 6003 API Activity (Application Activity).
pub(super) const API_ACTIVITY: Class = Class {
    uid: 6003,
    name: "API Activity",
    category_uid: 6,
    category_name: "Application Activity",
};
/// 6006 File Hosting Activity (Application Activity).
pub(super) const FILE_HOSTING: Class = Class {
    uid: 6006,
    name: "File Hosting Activity",
    category_uid: 6,
    category_name: "Application Activity",
};

/// `RecordType` → name, per the Management Activity API schema; `None` for unlisted values.
pub(super) fn record_type_name(n: i64) -> Option<&'static str> {
    Some(match n {
        1 => "ExchangeAdmin",
        2 => "ExchangeItem",
        3 => "ExchangeItemGroup",
        4 => "SharePoint",
        6 => "SharePointFileOperation",
        7 => "OneDrive",
        8 => "AzureActiveDirectory",
        9 => "AzureActiveDirectoryAccountLogon",
        10 => "DataCenterSecurityCmdlet",
        11 => "ComplianceDLPSharePoint",
        13 => "ComplianceDLPExchange",
        14 => "SharePointSharingOperation",
        15 => "AzureActiveDirectoryStsLogon",
        16 => "SkypeForBusinessPSTNUsage",
        17 => "SkypeForBusinessUsersBlocked",
        18 => "SecurityComplianceCenterEOPCmdlet",
        19 => "ExchangeAggregatedOperation",
        20 => "PowerBIAudit",
        21 => "CRM",
        22 => "Yammer",
        23 => "SkypeForBusinessCmdlets",
        24 => "Discovery",
        25 => "MicrosoftTeams",
        28 => "ThreatIntelligence",
        29 => "MailSubmission",
        30 => "MicrosoftFlow",
        31 => "AeD",
        32 => "MicrosoftStream",
        33 => "ComplianceDLPSharePointClassification",
        34 => "ThreatFinder",
        35 => "Project",
        36 => "SharePointListOperation",
        37 => "SharePointCommentOperation",
        38 => "DataGovernance",
        39 => "Kaizala",
        40 => "SecurityComplianceAlerts",
        41 => "ThreatIntelligenceUrl",
        42 => "SecurityComplianceInsights",
        43 => "MIPLabel",
        44 => "WorkplaceAnalytics",
        45 => "PowerAppsApp",
        46 => "PowerAppsPlan",
        47 => "ThreatIntelligenceAtpContent",
        48 => "LabelContentExplorer",
        49 => "TeamsHealthcare",
        50 => "ExchangeItemAggregated",
        51 => "HygieneEvent",
        52 => "DataInsightsRestApiAudit",
        53 => "InformationBarrierPolicyApplication",
        54 => "SharePointListItemOperation",
        55 => "SharePointContentTypeOperation",
        56 => "SharePointFieldOperation",
        57 => "MicrosoftTeamsAdmin",
        58 => "HRSignal",
        59 => "MicrosoftTeamsDevice",
        60 => "MicrosoftTeamsAnalytics",
        61 => "InformationWorkerProtection",
        62 => "Campaign",
        63 => "DLPEndpoint",
        64 => "AirInvestigation",
        65 => "Quarantine",
        66 => "MicrosoftForms",
        67 => "ApplicationAudit",
        68 => "ComplianceSupervisionExchange",
        69 => "CustomerKeyServiceEncryption",
        70 => "OfficeNative",
        71 => "MipAutoLabelSharePointItem",
        72 => "MipAutoLabelSharePointPolicyLocation",
        73 => "MicrosoftTeamsShifts",
        75 => "MipAutoLabelExchangeItem",
        76 => "CortanaBriefing",
        78 => "WDATPAlerts",
        79 => "PowerAppsResource",
        82 => "SensitivityLabelPolicyMatch",
        83 => "SensitivityLabelAction",
        84 => "SensitivityLabeledFileAction",
        85 => "AttackSim",
        86 => "AirManualInvestigation",
        87 => "SecurityComplianceRBAC",
        88 => "UserTraining",
        89 => "AirAdminActionInvestigation",
        90 => "MSTIC",
        91 => "PhysicalBadgingSignal",
        92 => "TeamsEasyApprovals",
        93 => "AipDiscover",
        94 => "AipSensitivityLabelAction",
        95 => "AipProtectionAction",
        96 => "AipFileDeleted",
        97 => "AipHeartBeat",
        98 => "MCASAlerts",
        99 => "OnPremisesFileShareScannerDlp",
        100 => "OnPremisesSharePointScannerDlp",
        101 => "ExchangeSearch",
        102 => "SharePointSearch",
        103 => "PrivacyInsights",
        105 => "MyAnalyticsSettings",
        106 => "SecurityComplianceUserChange",
        107 => "ComplianceDLPExchangeClassification",
        109 => "MipExactDataMatch",
        113 => "MS365DCustomDetection",
        148 => "ComplianceConnector",
        154 => "OMEPortal",
        216 => "VivaGoals",
        261 => "CopilotInteraction",
        275 => "OWAAuth",
        294 => "AadRiskDetection",
        357 => "FabricAudit",
        375 => "AppAdminActivity",
        454 => "DragonCopilotAdmin",
        462 => "MicrosoftTeamsUserConcern",
        _ => return None,
    })
}

/// Microsoft `UserType` → (name, OCSF `user.type_id`). OCSF 1.1.0 user types: 1 User, 2 Admin,
/// 3 System, 99 Other.
pub(super) fn user_type(n: i64) -> Option<(&'static str, u8)> {
    Some(match n {
        0 => ("Regular", 1),
        1 => ("Reserved", 99),
        2 => ("Admin", 2),
        3 => ("DcAdmin", 2),
        4 => ("System", 3),
        5 => ("Application", 99),
        6 => ("ServicePrincipal", 99),
        7 => ("CustomPolicy", 99),
        8 => ("SystemPolicy", 99),
        9 => ("PartnerTechnician", 99),
        10 => ("Guest", 1),
        _ => return None,
    })
}

/// A `UserType` given by name (any case) → its number.
pub(super) fn user_type_by_name(s: &str) -> Option<i64> {
    (0..=10).find(|&n| user_type(n).is_some_and(|(name, _)| name.eq_ignore_ascii_case(s)))
}

/// Exchange `LogonType` → name.
pub(super) fn logon_type(n: i64) -> Option<&'static str> {
    Some(match n {
        0 => "Owner",
        1 => "Admin",
        2 => "Delegated",
        3 => "Transport",
        4 => "SystemService",
        5 => "BestAccess",
        6 => "DelegatedAdmin",
        _ => return None,
    })
}

/// Well-known first-party resource applications (sign-in targets).
pub(super) fn resource_app_name(id: &str) -> Option<&'static str> {
    const KNOWN: &[(&str, &str)] = &[
        ("00000003-0000-0000-c000-000000000000", "Microsoft Graph"),
        (
            "00000002-0000-0ff1-ce00-000000000000",
            "Office 365 Exchange Online",
        ),
        (
            "00000003-0000-0ff1-ce00-000000000000",
            "Office 365 SharePoint Online",
        ),
        (
            "00000002-0000-0000-c000-000000000000",
            "Windows Azure Active Directory",
        ),
        (
            "797f4846-ba00-4fd7-ba43-dac1f8f63013",
            "Windows Azure Service Management API",
        ),
        (
            "00000004-0000-0ff1-ce00-000000000000",
            "Skype for Business Online",
        ),
        ("00000009-0000-0000-c000-000000000000", "Power BI Service"),
        (
            "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe",
            "Microsoft Teams Services",
        ),
    ];
    KNOWN
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(id))
        .map(|(_, v)| *v)
}
