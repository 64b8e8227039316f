//! Graph users over HTTP.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::*;

async fn graph_get(url: &str, token: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = client().get(url).bearer_auth(token).send().await.unwrap();
    let s = r.status().as_u16();
    let h = r.headers().clone();
    (s, r.json().await.unwrap_or(Value::Null), h)
}

async fn graph_token(base: &str) -> String {
    secret_token(base, TENANT_A, APP_SECRET, "https://graph.microsoft.com").await
}

#[tokio::test]
async fn users_paging_with_select_and_top_returns_every_user_once() {
    let emu = start("").await;
    let base = emu.base_url();
    let token = graph_token(&base).await;
    let mut next = Some(format!(
        "{base}/v1.0/users?$select=id,displayName,accountEnabled&$top=3"
    ));
    let mut ids = Vec::new();
    let mut pages = 0;
    while let Some(u) = next {
        let (s, body, _) = graph_get(&u, &token).await;
        assert_eq!(s, 200, "{body}");
        for user in body["value"].as_array().unwrap() {
            let keys: BTreeSet<&str> = user
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                BTreeSet::from(["id", "displayName", "accountEnabled"]),
                "$select honoured"
            );
            ids.push(user["id"].as_str().unwrap().to_owned());
        }
        next = body["@odata.nextLink"].as_str().map(str::to_owned);
        pages += 1;
    }
    assert_eq!(pages, 4, "10 users at $top=3");
    let expected: Vec<String> = emu.users(TENANT_A).into_iter().map(|u| u.id).collect();
    assert_eq!(ids, expected);
    // Default properties without $select.
    let (_, body, _) = graph_get(&format!("{base}/v1.0/users"), &token).await;
    let first = &body["value"][0];
    assert!(first.get("userPrincipalName").is_some() && first.get("accountEnabled").is_none());
    // $top out of range.
    let (s, body, _) = graph_get(&format!("{base}/v1.0/users?$top=1000"), &token).await;
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 999")
    );
}

#[tokio::test]
async fn without_user_read_all_graph_answers_authorization_request_denied() {
    let emu = start("").await;
    let base = emu.base_url();
    // The certificate app has no Graph roles; use a secret-less path: the no-consent app.
    let token = secret_token(
        &base,
        TENANT_A,
        APP_NOCONSENT,
        "https://graph.microsoft.com",
    )
    .await;
    let (s, body, _) = graph_get(&format!("{base}/v1.0/users"), &token).await;
    assert_eq!(s, 403);
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    // A Management API token is not a Graph token.
    let manage = manage_token(&base, TENANT_A).await;
    assert_eq!(
        graph_get(&format!("{base}/v1.0/users"), &manage).await.0,
        401
    );
}

async fn delta_round(url: &str, token: &str) -> (Vec<Value>, String) {
    let mut next = Some(url.to_owned());
    let mut items = Vec::new();
    loop {
        let u = next.take().unwrap();
        let (s, body, _) = graph_get(&u, token).await;
        assert_eq!(s, 200, "{body}");
        items.extend(body["value"].as_array().unwrap().iter().cloned());
        if let Some(n) = body["@odata.nextLink"].as_str() {
            next = Some(n.to_owned());
        } else {
            return (
                items,
                body["@odata.deltaLink"]
                    .as_str()
                    .expect("deltaLink at the end")
                    .to_owned(),
            );
        }
    }
}

#[tokio::test]
async fn delta_full_sync_then_changes_then_410_when_the_token_expires() {
    let emu = o365_emulator::Emulator::start(
        o365_emulator::Scenario::from_toml(&format!(
            "delta_token_ttl_secs = 3600\n{}",
            base_toml()
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    let base = emu.base_url();
    let token = graph_token(&base).await;
    let (full, link) = delta_round(
        &format!("{base}/v1.0/users/delta?$select=displayName,department"),
        &token,
    )
    .await;
    assert_eq!(full.len(), 10);
    // Changes: one added, one updated, one removed.
    let users = emu.users(TENANT_A);
    let mut newcomer = users[0].clone();
    newcomer.id = "0f0f0f0f-0000-4000-8000-000000000001".into();
    newcomer.display_name = "New Person".into();
    assert!(emu.add_user(TENANT_A, newcomer));
    assert!(emu.update_user(TENANT_A, &users[1].id, |u| u.department =
        Some("Security".into())));
    assert!(emu.remove_user(TENANT_A, &users[2].id));
    let (changes, link2) = delta_round(&link, &token).await;
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(changes.iter().any(|c| c["displayName"] == "New Person"));
    assert!(
        changes
            .iter()
            .any(|c| c["id"] == users[1].id.as_str() && c["department"] == "Security")
    );
    assert!(
        changes
            .iter()
            .any(|c| c["id"] == users[2].id.as_str() && c["@removed"]["reason"] == "deleted")
    );
    // Nothing new: an empty round.
    let (none, link3) = delta_round(&link2, &token).await;
    assert!(none.is_empty());
    // The token ages past its lifetime: 410 Gone with a Location to restart from.
    emu.advance_clock(chrono::Duration::hours(2));
    let token = graph_token(&base).await;
    let (s, _, headers) = graph_get(&link3, &token).await;
    assert_eq!(s, 410);
    assert!(
        headers
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("/v1.0/users/delta")
    );
}
