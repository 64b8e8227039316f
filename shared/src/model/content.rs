//! Content types, listed blobs, fetch jobs and listing windows.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The five content types of the Management Activity API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContentType {
    /// `Audit.AzureActiveDirectory`: Entra sign-ins and directory changes.
    AzureActiveDirectory,
    /// `Audit.Exchange`: mailbox and admin audit.
    Exchange,
    /// `Audit.SharePoint`: SharePoint and OneDrive.
    SharePoint,
    /// `Audit.General`: every other workload (Teams, Power BI, …).
    General,
    /// `DLP.All`: DLP events of every workload.
    DlpAll,
}

impl ContentType {
    /// All five, in a fixed order.
    pub const ALL: [ContentType; 5] = [
        ContentType::AzureActiveDirectory,
        ContentType::Exchange,
        ContentType::SharePoint,
        ContentType::General,
        ContentType::DlpAll,
    ];

    /// The wire spelling, e.g. `Audit.Exchange`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::AzureActiveDirectory => "Audit.AzureActiveDirectory",
            ContentType::Exchange => "Audit.Exchange",
            ContentType::SharePoint => "Audit.SharePoint",
            ContentType::General => "Audit.General",
            ContentType::DlpAll => "DLP.All",
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown content type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown content type `{0}`: expected one of Audit.AzureActiveDirectory, Audit.Exchange, Audit.SharePoint, Audit.General, DLP.All"
)]
pub struct UnknownContentType(pub String);

impl FromStr for ContentType {
    type Err = UnknownContentType;
    /// Case-insensitive, as the service itself is (`DLP.ALL` is accepted).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContentType::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownContentType(s.to_owned()))
    }
}

impl Serialize for ContentType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ContentType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One item of a `/subscriptions/content` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlob {
    /// Content type.
    pub content_type: ContentType,
    /// Opaque id (contains `$`).
    pub content_id: String,
    /// URL to GET the blob.
    pub content_uri: String,
    /// When the blob became available (the listing windows filter on this).
    pub content_created: DateTime<Utc>,
    /// After this the blob can no longer be retrieved.
    pub content_expiration: DateTime<Utc>,
}

/// The longest window the service accepts is 24 h; some tenants refuse exactly 24 h, so
/// windows stay strictly shorter.
pub const MAX_WINDOW: Duration = Duration::seconds(23 * 3600 + 55 * 60);

/// How far back the service lets a window start (7 days), less a margin for request latency
/// and clock skew.
pub const MAX_LOOKBACK: Duration = Duration::seconds(7 * 86_400 - 10 * 60);

/// A listing window `[start, end)` on `contentCreated`, valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// A window the service would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// `start >= end`.
    #[error("window start {start} is not before its end {end}")]
    Empty {
        /// Start.
        start: DateTime<Utc>,
        /// End.
        end: DateTime<Utc>,
    },
    /// Wider than [`MAX_WINDOW`].
    #[error("window {start}..{end} is wider than 23h55m; split it")]
    TooWide {
        /// Start.
        start: DateTime<Utc>,
        /// End.
        end: DateTime<Utc>,
    },
    /// Starts before `now - MAX_LOOKBACK`.
    #[error("window start {start} is more than 7 days back (limit {limit})")]
    TooOld {
        /// Start.
        start: DateTime<Utc>,
        /// Oldest allowed start.
        limit: DateTime<Utc>,
    },
}

impl Window {
    /// A window checked against the service's rules at time `now`.
    ///
    /// # Errors
    /// [`WindowError`] naming the broken rule.
    pub fn new(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Window, WindowError> {
        if start >= end {
            return Err(WindowError::Empty { start, end });
        }
        if end - start > MAX_WINDOW {
            return Err(WindowError::TooWide { start, end });
        }
        let limit = now - MAX_LOOKBACK;
        if start < limit {
            return Err(WindowError::TooOld { start, limit });
        }
        Ok(Window { start, end })
    }

    /// Splits `[start, end)` into valid windows of at most `piece`, after clamping `start` into
    /// the 7-day limit. Returns no window when nothing remains.
    pub fn split(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        piece: Duration,
        now: DateTime<Utc>,
    ) -> Vec<Window> {
        let piece = piece.clamp(Duration::minutes(1), MAX_WINDOW);
        // Whole seconds: the service's documented formats have no fractions. The start rounds
        // down (an overlap, never a gap); the 7-day limit rounds up (inside the limit).
        let limit = truncate_secs(now - MAX_LOOKBACK) + Duration::seconds(1);
        let mut s = truncate_secs(start).max(limit);
        let end = truncate_secs(end);
        let mut out = Vec::new();
        while s < end {
            let e = (s + piece).min(end);
            out.push(Window { start: s, end: e });
            s = e;
        }
        out
    }

    /// Start (inclusive).
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// End (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }
}

fn truncate_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_parse_case_insensitively_and_round_trip() {
        for ct in ContentType::ALL {
            assert_eq!(ct.as_str().to_uppercase().parse::<ContentType>(), Ok(ct));
            let json = serde_json::to_string(&ct).unwrap();
            assert_eq!(serde_json::from_str::<ContentType>(&json).unwrap(), ct);
        }
        let err = "Audit.Nope".parse::<ContentType>().unwrap_err();
        assert!(
            err.to_string().contains("DLP.All"),
            "the error lists the valid names"
        );
    }

    #[test]
    fn split_makes_windows_strictly_under_24h_inside_7_days() {
        let now = Utc::now();
        let ws = Window::split(now - Duration::days(9), now, Duration::hours(24), now);
        assert!(!ws.is_empty());
        assert!(ws[0].start() >= now - Duration::days(7));
        for w in &ws {
            assert!(w.end() - w.start() < Duration::hours(24));
            assert!(Window::new(w.start(), w.end(), now).is_ok());
        }
        for pair in ws.windows(2) {
            assert_eq!(
                pair[0].end(),
                pair[1].start(),
                "contiguous, no gap and no overlap"
            );
        }
        assert_eq!(ws.last().unwrap().end(), truncate_secs(now));
    }

    #[test]
    fn invalid_windows_are_refused() {
        let now = Utc::now();
        assert!(matches!(
            Window::new(now, now, now),
            Err(WindowError::Empty { .. })
        ));
        assert!(matches!(
            Window::new(now - Duration::hours(24), now, now),
            Err(WindowError::TooWide { .. })
        ));
        assert!(matches!(
            Window::new(
                now - Duration::days(8),
                now - Duration::days(8) + Duration::hours(1),
                now
            ),
            Err(WindowError::TooOld { .. })
        ));
    }
}
