//! URL checks: a content URI or next-page link is only ever requested when it points at the
//! tenant's own Management API (same scheme, host and port, and the expected path).

use url::Url;

/// Query parameter sent on every call.
pub(crate) const PUBLISHER_PARAM: &str = "PublisherIdentifier";

/// The Management API base of a tenant, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct ManageBase {
    url: Url,
    /// Path prefix without a trailing slash (`""` for a bare host; `/gcc-high` behind a proxy or
    /// the emulator).
    prefix: String,
}

impl ManageBase {
    pub(crate) fn parse(base: &str) -> Result<ManageBase, String> {
        let url = Url::parse(base.trim()).map_err(|e| format!("`{base}` is not a URL ({e})"))?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(format!("`{base}` must be an http(s) URL with a host"));
        }
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!("`{base}` must not carry a query or credentials"));
        }
        let prefix = url.path().trim_end_matches('/').to_owned();
        Ok(ManageBase { url, prefix })
    }

    /// `{base}/api/v1.0/{tenant}/activity/feed/{op}`.
    pub(crate) fn feed(&self, tenant: &str, op: &str) -> Url {
        let mut u = self.url.clone();
        u.set_path(&format!(
            "{}/api/v1.0/{tenant}/activity/feed/{op}",
            self.prefix
        ));
        u.set_fragment(None);
        u
    }

    /// Same scheme, host and port as the base, no credentials, path under the base's prefix.
    pub(crate) fn same_origin(&self, u: &Url) -> Result<(), &'static str> {
        if u.scheme() != self.url.scheme() {
            return Err("its scheme differs from endpoints.manage");
        }
        if u.host_str().map(str::to_ascii_lowercase)
            != self.url.host_str().map(str::to_ascii_lowercase)
        {
            return Err("its host differs from endpoints.manage");
        }
        if u.port_or_known_default() != self.url.port_or_known_default() {
            return Err("its port differs from endpoints.manage");
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err("it carries credentials");
        }
        if !u.path().starts_with(&format!("{}/", self.prefix)) {
            return Err("its path is outside endpoints.manage");
        }
        Ok(())
    }

    /// The checks of a blob URI: origin, then path
    /// `{prefix}/api/v1.0|v1/{tenant}/activity/feed/audit/{id}` with one non-empty id segment.
    /// Returns the content id.
    pub(crate) fn check_blob(&self, u: &Url, tenant: &str) -> Result<String, &'static str> {
        self.same_origin(u)?;
        let rest = &u.path()[self.prefix.len()..];
        let segments: Vec<&str> = rest.split('/').collect();
        // ["", "api", ver, tenant, "activity", "feed", "audit", id]
        let [empty, api, ver, t, activity, feed, audit, id] = segments.as_slice() else {
            return Err("its path is not /api/v1.0/{tenant}/activity/feed/audit/{contentId}");
        };
        if !empty.is_empty()
            || *api != "api"
            || !matches!(*ver, "v1.0" | "v1")
            || !activity.eq_ignore_ascii_case("activity")
            || !feed.eq_ignore_ascii_case("feed")
            || !audit.eq_ignore_ascii_case("audit")
        {
            return Err("its path is not /api/v1.0/{tenant}/activity/feed/audit/{contentId}");
        }
        if !t.eq_ignore_ascii_case(tenant) {
            return Err("it names another tenant");
        }
        let lower = id.to_ascii_lowercase();
        if id.is_empty()
            || *id == "."
            || *id == ".."
            || lower.contains("%2f")
            || lower.contains("%5c")
        {
            return Err("its content id is empty or hides a path");
        }
        Ok(percent_decode(id))
    }
}

/// Adds `PublisherIdentifier` unless the URL already has it (any case), keeping the rest verbatim.
pub(crate) fn ensure_publisher(u: &mut Url, publisher: &str) {
    let present = u
        .query_pairs()
        .any(|(k, _)| k.eq_ignore_ascii_case(PUBLISHER_PARAM));
    if !present {
        u.query_pairs_mut().append_pair(PUBLISHER_PARAM, publisher);
    }
}

/// At most 200 characters of a URL for an error message.
pub(crate) fn shorten(uri: &str) -> String {
    crate::auth::truncate(uri, 200)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "3f2a9c1d-7b4e-4c2a-9d11-5e6f7a8b9c0d";

    fn check(base: &str, uri: &str) -> Result<String, &'static str> {
        let b = ManageBase::parse(base).unwrap();
        let u = Url::parse(uri).map_err(|_| "unparseable")?;
        b.check_blob(&u, T)
    }

    #[test]
    fn blob_uris_of_this_tenant_pass() {
        let id = "20260302120512345000001$20260302121230456000002$audit_sharepoint$Audit_SharePoint$emea0001";
        let ok = format!("https://manage.office.com/api/v1.0/{T}/activity/feed/audit/{id}");
        assert_eq!(check("https://manage.office.com", &ok).as_deref(), Ok(id));
        assert!(check("https://manage.office.com/", &ok).is_ok());
        let v1 = format!(
            "https://MANAGE.office.com:443/api/v1/{}/activity/feed/audit/{id}",
            T.to_uppercase()
        );
        assert!(check("https://manage.office.com", &v1).is_ok());
        let prefixed =
            format!("http://127.0.0.1:8080/gcc-high/api/v1.0/{T}/activity/feed/audit/a$b$c");
        assert!(check("http://127.0.0.1:8080/gcc-high", &prefixed).is_ok());
    }

    #[test]
    fn foreign_uris_are_refused() {
        let path = format!("/api/v1.0/{T}/activity/feed/audit/a$b$c");
        let base = "https://manage.office.com";
        let cases = [
            format!("https://evil.example{path}"),
            format!("http://manage.office.com{path}"),
            format!("https://manage.office.com:8443{path}"),
            format!("https://user:pw@manage.office.com{path}"),
            format!("https://manage.office.com.evil.example{path}"),
            "https://manage.office.com/api/v1.0/41463f53-8812-40f4-890f-865bf6e35190/activity/feed/audit/a$b$c".into(),
            format!("https://manage.office.com/api/v1.0/{T}/activity/feed/subscriptions/content"),
            format!("https://manage.office.com/api/v1.0/{T}/activity/feed/audit/"),
            format!("https://manage.office.com/api/v1.0/{T}/activity/feed/audit/a/b"),
            format!("https://manage.office.com/api/v1.0/{T}/activity/feed/audit/a%2Fb"),
            format!("https://manage.office.com/api/v2.0/{T}/activity/feed/audit/x"),
            format!("https://manage.office.com/x/api/v1.0/{T}/activity/feed/audit/x"),
            "not a url".into(),
            format!("file://{path}"),
        ];
        for c in cases {
            assert!(check(base, &c).is_err(), "accepted {c}");
        }
        // The base's own prefix is required.
        assert!(
            check(
                "http://127.0.0.1:1/gcc",
                &format!("http://127.0.0.1:1{path}")
            )
            .is_err()
        );
    }

    #[test]
    fn publisher_is_appended_once_and_the_rest_kept() {
        let mut u = Url::parse("https://h/api/v1/t/activity/feed/subscriptions/content?contentType=Audit.SharePoint&startTime=2015-10-01&nextPage=2015101900R022885001761").unwrap();
        ensure_publisher(&mut u, "p");
        assert_eq!(
            u.as_str(),
            "https://h/api/v1/t/activity/feed/subscriptions/content?contentType=Audit.SharePoint&startTime=2015-10-01&nextPage=2015101900R022885001761&PublisherIdentifier=p"
        );
        let mut u = Url::parse("https://h/x?publisheridentifier=q").unwrap();
        ensure_publisher(&mut u, "p");
        assert_eq!(u.as_str(), "https://h/x?publisheridentifier=q");
    }

    #[test]
    fn bad_bases_are_refused() {
        assert!(ManageBase::parse("manage.office.com").is_err());
        assert!(ManageBase::parse("ftp://manage.office.com").is_err());
        assert!(ManageBase::parse("https://manage.office.com?x=1").is_err());
        let b = ManageBase::parse("https://manage.office.com/").unwrap();
        assert_eq!(
            b.feed(T, "subscriptions/list").as_str(),
            format!("https://manage.office.com/api/v1.0/{T}/activity/feed/subscriptions/list")
        );
    }
}
