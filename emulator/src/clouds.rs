//! The Microsoft clouds the emulator can pretend to be (fact sheet §1).
//!
//! One emulator listens on one port; each cloud is served under its own path prefix
//! (`/commercial`, `/gcc`, `/gcc-high`, `/dod`) and the scenario's default cloud is also served
//! at the root. A tenant belongs to exactly one cloud: asking another cloud's login endpoint for a
//! token is refused with AADSTS90002, as Entra does for a GCC High tenant sent to the worldwide login.

use serde::{Deserialize, Serialize};

/// A national cloud (or the worldwide one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    /// Enterprise / worldwide.
    #[default]
    Commercial,
    /// US Government Community Cloud (worldwide login and Graph, own Management API host).
    Gcc,
    /// GCC High.
    GccHigh,
    /// Department of Defense.
    Dod,
}

impl Cloud {
    /// Every cloud, in a fixed order.
    pub const ALL: [Cloud; 4] = [Cloud::Commercial, Cloud::Gcc, Cloud::GccHigh, Cloud::Dod];

    /// The path prefix the emulator serves this cloud under.
    pub fn slug(self) -> &'static str {
        match self {
            Cloud::Commercial => "commercial",
            Cloud::Gcc => "gcc",
            Cloud::GccHigh => "gcc-high",
            Cloud::Dod => "dod",
        }
    }

    /// Parses a path prefix.
    pub fn from_slug(s: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|c| c.slug() == s)
    }

    /// The real Entra login host of this cloud.
    pub fn login_host(self) -> &'static str {
        match self {
            Cloud::Commercial | Cloud::Gcc => "https://login.microsoftonline.com",
            Cloud::GccHigh | Cloud::Dod => "https://login.microsoftonline.us",
        }
    }

    /// The Management Activity API resource (and host) of this cloud.
    pub fn manage_resource(self) -> &'static str {
        match self {
            Cloud::Commercial => "https://manage.office.com",
            Cloud::Gcc => "https://manage-gcc.office.com",
            Cloud::GccHigh => "https://manage.office365.us",
            Cloud::Dod => "https://manage.protection.apps.mil",
        }
    }

    /// The Microsoft Graph resource (and host) of this cloud.
    pub fn graph_resource(self) -> &'static str {
        match self {
            Cloud::Commercial | Cloud::Gcc => "https://graph.microsoft.com",
            Cloud::GccHigh => "https://graph.microsoft.us",
            Cloud::Dod => "https://dod-graph.microsoft.us",
        }
    }

    /// Clouds that share one login service: a tenant of one of them can get tokens from the
    /// other's login endpoint (GCC uses the worldwide Entra).
    pub fn same_login(self, other: Cloud) -> bool {
        self.login_host() == other.login_host()
    }
}

/// Which API a token audience names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Office 365 Management Activity API.
    Manage,
    /// Microsoft Graph.
    Graph,
}

impl Api {
    /// The resource URI of this API in `cloud`.
    pub fn resource(self, cloud: Cloud) -> &'static str {
        match self {
            Api::Manage => cloud.manage_resource(),
            Api::Graph => cloud.graph_resource(),
        }
    }

    /// Finds which API (of any cloud) a resource URI names, ignoring a trailing slash.
    pub fn from_resource(resource: &str) -> Option<(Api, Cloud)> {
        let r = resource.trim_end_matches('/');
        for cloud in Cloud::ALL {
            for api in [Api::Manage, Api::Graph] {
                if api.resource(cloud).eq_ignore_ascii_case(r) {
                    return Some((api, cloud));
                }
            }
        }
        None
    }
}
