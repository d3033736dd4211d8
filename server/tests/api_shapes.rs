//! The account API and the device flow against their typed shapes (issue 14), each on
//! SQLite and PostgreSQL: live answers deserialize into the `tokengate_api` types the
//! OpenAPI document is built from, money is written exactly, and what the document calls
//! invalid is refused in the API's error shape — a JSON array where an object body is
//! documented, a `days` that is not an integer, a device lookup without `user_code`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, client, start_public};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokengate_api::account::{
    ApiKeyView, Balance, CreatedKey, DeviceRequestView, Me, RevokedKey, SessionInfo, SignedOut,
    UsageDaily, UsageSummary,
};
use tokengate_api::device::{
    DeviceAuthorization, Discovery, OAuthError, OAuthErrorCode, TokenForm,
};
use tokengate_api::{Timestamp, Usd};
use tokengate_core::keys::NewKey;
use tokengate_core::money::NANOS_PER_USD;

/// A customer with $5 and a key, and an access token of theirs.
async fn signed_in(r: &Running, email: &str) -> (i64, String, String) {
    let new = NewKey {
        name: "first".into(),
        ..Default::default()
    };
    let (uid, raw) = r.customer(email, 5 * NANOS_PER_USD, new).await;
    let tok = r.token(uid, "account keys billing").await;
    (uid, raw, tok)
}

/// Sends `body` (raw text, as JSON) and answers the status and the body as text.
async fn send(
    r: &Running,
    method: Method,
    path: &str,
    tok: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut req = client()
        .request(method, format!("{}{path}", r.base))
        .bearer_auth(tok);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// A 200 (or 201) answer read as `T`; an answer that does not fit `T` fails the test.
async fn typed<T: DeserializeOwned>(
    r: &Running,
    method: Method,
    path: &str,
    tok: &str,
    body: Option<Value>,
) -> T {
    let text = body.map(|b| b.to_string());
    let (s, t) = send(r, method.clone(), path, tok, text.as_deref()).await;
    assert!(s == 200 || s == 201, "{method} {path}: {s} {t}");
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{method} {path} is no {e}: {t}"))
}

/// An error answer in the API's shape with `status` and `code`.
fn api_error(status: u16, text: &str, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{text}");
    let v: Value =
        serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON (the API shape): {text:?}"));
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["type"].is_string(), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

on_both!(
    account_answers_are_the_typed_shapes,
    account_answers_are_the_typed_shapes_on_sqlite,
    account_answers_are_the_typed_shapes_on_postgres
);

async fn account_answers_are_the_typed_shapes(database_url: Option<String>) {
    let r = start_public(database_url, &[]).await;
    let (uid, raw, tok) = signed_in(&r, "shapes@example.com").await;

    let me: Me = typed(&r, Method::GET, "/api/v1/me", &tok, None).await;
    assert_eq!((me.id, me.balance_usd), (uid, Usd(5 * NANOS_PER_USD)));
    let patched: Me = typed(
        &r,
        Method::PATCH,
        "/api/v1/me",
        &tok,
        Some(json!({"display_name": "Typed"})),
    )
    .await;
    assert_eq!(patched.display_name, "Typed");
    let _: Vec<SessionInfo> = typed(&r, Method::GET, "/api/v1/me/sessions", &tok, None).await;

    // One request costs a fraction of a cent: the balances are written exactly.
    let (s, _, v) = common::chat(
        &r.base,
        &raw,
        json!({"model": "mock/fast-1", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    common::wait_for_logs(&r, uid, 1).await;
    let summary: UsageSummary = typed(&r, Method::GET, "/api/v1/me/usage?days=7", &tok, None).await;
    assert_eq!((summary.range_days, summary.total_requests), (7, 1));
    let cost = summary.total_cost_usd.nanos();
    assert!(
        cost > 0 && cost % 10_000_000 != 0,
        "a sub-cent cost: {cost}"
    );
    let balance: Balance = typed(&r, Method::GET, "/api/v1/balance", &tok, None).await;
    assert_eq!(balance.balance_usd, Usd(5 * NANOS_PER_USD - cost));
    assert_eq!(balance.currency, "USD");
    let (_, text) = send(&r, Method::GET, "/api/v1/balance", &tok, None).await;
    assert!(
        text.contains(&format!("\"{}\"", Usd(5 * NANOS_PER_USD - cost))),
        "the exact decimal: {text}"
    );
    let daily: UsageDaily =
        typed(&r, Method::GET, "/api/v1/me/usage/daily?days=2", &tok, None).await;
    assert_eq!(daily.total_cost_usd, summary.total_cost_usd);
    assert!(daily.days.len() >= 2);
    assert_eq!(daily.by_model.len(), 1);
    // The dashboard's other read: this month's statement, its usage the same cost.
    let month: tokengate_api::billing::StatementView =
        typed(&r, Method::GET, "/api/v1/me/billing/statement", &tok, None).await;
    assert_eq!(month.usage_usd, summary.total_cost_usd);

    // Keys: create, list, get, patch, rotate, revoke.
    let created: CreatedKey = typed(
        &r,
        Method::POST,
        "/api/v1/me/keys",
        &tok,
        Some(
            json!({"name": "typed", "spend_limit_usd": "0.000150", "expires_at": 4_102_444_800u64}),
        ),
    )
    .await;
    assert!(created.raw.starts_with(&created.key_prefix));
    assert_eq!(created.spend_limit_usd, Some(Usd(150_000)));
    assert_eq!(created.expires_at, Some(Timestamp(4_102_444_800_000)));
    let path = format!("/api/v1/me/keys/{}", created.id);
    let list: Vec<ApiKeyView> = typed(&r, Method::GET, "/api/v1/me/keys", &tok, None).await;
    assert_eq!(list.len(), 2);
    let one: ApiKeyView = typed(&r, Method::GET, &path, &tok, None).await;
    assert_eq!(one, created.clone().into_parts().1);
    let patched: ApiKeyView = typed(
        &r,
        Method::PATCH,
        &path,
        &tok,
        Some(json!({"spend_limit_usd": null, "rpm": 5})),
    )
    .await;
    assert_eq!((patched.spend_limit_usd, patched.rpm), (None, Some(5)));
    let rotated: CreatedKey = typed(&r, Method::POST, &format!("{path}/rotate"), &tok, None).await;
    assert_ne!(rotated.raw, created.raw);
    let revoked: RevokedKey = typed(&r, Method::DELETE, &path, &tok, None).await;
    assert_eq!(
        (revoked.id, revoked.status.as_str()),
        (created.id, "revoked")
    );

    let out: SignedOut = typed(&r, Method::POST, "/api/v1/me/logout-everywhere", &tok, None).await;
    assert!(out.signed_out);
    r.stop().await;
}

on_both!(
    array_bodies_are_refused_where_objects_are_documented,
    array_bodies_are_refused_where_objects_are_documented_on_sqlite,
    array_bodies_are_refused_where_objects_are_documented_on_postgres
);

async fn array_bodies_are_refused_where_objects_are_documented(database_url: Option<String>) {
    let r = start_public(database_url, &[]).await;
    let (_, _, tok) = signed_in(&r, "arrays@example.com").await;
    let keys: Vec<ApiKeyView> = typed(&r, Method::GET, "/api/v1/me/keys", &tok, None).await;
    let path = format!("/api/v1/me/keys/{}", keys[0].id);
    for body in [
        "[null, null]",
        "[]",
        " [\"renamed\"]",
        "null",
        "\"renamed\"",
        "5",
    ] {
        let (s, t) = send(&r, Method::PATCH, &path, &tok, Some(body)).await;
        api_error(s, &t, 400, "invalid_request");
        let (s, t) = send(&r, Method::PATCH, "/api/v1/me", &tok, Some(body)).await;
        api_error(s, &t, 400, "invalid_request");
    }
    // Nothing changed; an object still works.
    let key: ApiKeyView = typed(&r, Method::GET, &path, &tok, None).await;
    assert_eq!(key, keys[0]);
    let key: ApiKeyView = typed(
        &r,
        Method::PATCH,
        &path,
        &tok,
        Some(json!({"name": "renamed"})),
    )
    .await;
    assert_eq!(key.name, "renamed");
    r.stop().await;
}

on_both!(
    usage_days_is_an_integer,
    usage_days_is_an_integer_on_sqlite,
    usage_days_is_an_integer_on_postgres
);

async fn usage_days_is_an_integer(database_url: Option<String>) {
    let r = start_public(database_url, &[]).await;
    let (_, _, tok) = signed_in(&r, "days@example.com").await;
    for route in ["/api/v1/me/usage", "/api/v1/me/usage/daily"] {
        for days in [
            "abc",
            "1.5",
            "7d",
            "",
            "0",
            "366",
            "-1",
            "99999999999999999999",
        ] {
            let (s, t) = send(&r, Method::GET, &format!("{route}?days={days}"), &tok, None).await;
            api_error(s, &t, 400, "invalid_request");
        }
        for (query, want) in [("?days=1", 1), ("?days=365", 365), ("", 30)] {
            let (s, t) = send(&r, Method::GET, &format!("{route}{query}"), &tok, None).await;
            assert_eq!(s, 200, "{route}{query}: {t}");
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["range_days"], want, "{route}{query}");
        }
    }
    r.stop().await;
}

on_both!(
    device_flow_answers_are_the_typed_shapes,
    device_flow_answers_are_the_typed_shapes_on_sqlite,
    device_flow_answers_are_the_typed_shapes_on_postgres
);

async fn device_flow_answers_are_the_typed_shapes(database_url: Option<String>) {
    let r = start_public(database_url, &[]).await;
    let (_, _, tok) = signed_in(&r, "device@example.com").await;
    let http = client();
    let d: Discovery = http
        .get(format!("{}/api/v1/auth/discovery", r.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d.client_id, "tokengate-cli");
    let resp = http
        .post(&d.device_authorization_endpoint)
        .form(&[("client_id", d.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let grant: DeviceAuthorization = resp.json().await.unwrap();
    assert_eq!(grant.interval, 5);

    // The lookup without a code is refused in the API's shape, not as plain text.
    for query in ["", "?user_cod=x", "?user_code"] {
        let (s, t) = send(
            &r,
            Method::GET,
            &format!("/api/v1/auth/device/request{query}"),
            &tok,
            None,
        )
        .await;
        if query == "?user_code" {
            // Present and empty: a code that names nothing.
            api_error(s, &t, 404, "not_found");
        } else {
            api_error(s, &t, 400, "invalid_request");
        }
    }
    let view: DeviceRequestView = typed(
        &r,
        Method::GET,
        &format!("/api/v1/auth/device/request?user_code={}", grant.user_code),
        &tok,
        None,
    )
    .await;
    assert_eq!(view.user_code, grant.user_code);

    // Polling before approval, and unknown grants, answer typed OAuth errors.
    let poll = |form: TokenForm| {
        let http = http.clone();
        let url = d.token_endpoint.clone();
        async move {
            let resp = http.post(url).form(&form).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<OAuthError>().await.unwrap())
        }
    };
    let (s, e) = poll(TokenForm::device_code(
        &d.client_id,
        &grant.device_code,
        None,
    ))
    .await;
    assert_eq!((s, e.error), (400, OAuthErrorCode::AuthorizationPending));
    let (s, e) = poll(TokenForm::refresh(&d.client_id, "no-such-token")).await;
    assert_eq!((s, e.error), (400, OAuthErrorCode::InvalidGrant));
    let (s, e) = poll(TokenForm {
        grant_type: "password".into(),
        client_id: d.client_id.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!((s, e.error), (400, OAuthErrorCode::UnsupportedGrantType));
    let (s, e) = poll(TokenForm::refresh("someone-else", "x")).await;
    assert_eq!((s, e.error), (401, OAuthErrorCode::InvalidClient));
    r.stop().await;
}

/// The schema the document gives a body: a `$ref` to a component (or an array of one),
/// resolved, with whether it is an array.
fn documented<'a>(doc: &'a Value, body: &'a Value) -> (&'a str, bool, &'a Value) {
    let (schema, array) = match body["type"].as_str() {
        Some("array") => (&body["items"], true),
        _ => (body, false),
    };
    let name = schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .unwrap_or_else(|| panic!("not a component: {body}"));
    (name, array, &doc["components"]["schemas"][name])
}

/// The component `T` derives, as JSON.
fn derived<T: utoipa::ToSchema>() -> (String, Value) {
    let schema = serde_json::to_value(<T as utoipa::PartialSchema>::schema()).unwrap();
    (T::name().into_owned(), schema)
}

/// (method, path, status or "request", content type, whether an array, the type's
/// component name and schema).
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    (String, Value),
);

/// Every account and device-flow body of the document is the schema its `tokengate_api`
/// type derives: no hand-written twin can stand in for one.
#[test]
fn documented_bodies_are_the_schemas_of_the_api_types() {
    use tokengate_api::account::*;
    use tokengate_api::device::*;

    let doc: Value = serde_json::from_str(&tokengate_server::docs::openapi_json()).unwrap();
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<Case> = vec![
        ("get", "/api/v1/me", "200", json, false, derived::<Me>()),
        ("patch", "/api/v1/me", "200", json, false, derived::<Me>()),
        (
            "patch",
            "/api/v1/me",
            "request",
            json,
            false,
            derived::<ProfilePatch>(),
        ),
        (
            "get",
            "/api/v1/me/sessions",
            "200",
            json,
            true,
            derived::<SessionInfo>(),
        ),
        (
            "get",
            "/api/v1/balance",
            "200",
            json,
            false,
            derived::<Balance>(),
        ),
        (
            "get",
            "/api/v1/me/keys",
            "200",
            json,
            true,
            derived::<ApiKeyView>(),
        ),
        (
            "post",
            "/api/v1/me/keys",
            "201",
            json,
            false,
            derived::<CreatedKey>(),
        ),
        (
            "post",
            "/api/v1/me/keys",
            "request",
            json,
            false,
            derived::<CreateKeyRequest>(),
        ),
        (
            "get",
            "/api/v1/me/keys/{id}",
            "200",
            json,
            false,
            derived::<ApiKeyView>(),
        ),
        (
            "patch",
            "/api/v1/me/keys/{id}",
            "200",
            json,
            false,
            derived::<ApiKeyView>(),
        ),
        (
            "patch",
            "/api/v1/me/keys/{id}",
            "request",
            json,
            false,
            derived::<UpdateKeyRequest>(),
        ),
        (
            "delete",
            "/api/v1/me/keys/{id}",
            "200",
            json,
            false,
            derived::<RevokedKey>(),
        ),
        (
            "post",
            "/api/v1/me/keys/{id}/rotate",
            "200",
            json,
            false,
            derived::<CreatedKey>(),
        ),
        (
            "get",
            "/api/v1/me/usage",
            "200",
            json,
            false,
            derived::<UsageSummary>(),
        ),
        (
            "get",
            "/api/v1/me/usage/daily",
            "200",
            json,
            false,
            derived::<UsageDaily>(),
        ),
        (
            "post",
            "/api/v1/me/logout-everywhere",
            "200",
            json,
            false,
            derived::<SignedOut>(),
        ),
        (
            "get",
            "/api/v1/auth/device/request",
            "200",
            json,
            false,
            derived::<DeviceRequestView>(),
        ),
        (
            "get",
            "/api/v1/auth/discovery",
            "200",
            json,
            false,
            derived::<Discovery>(),
        ),
        (
            "post",
            "/api/v1/auth/device/code",
            "200",
            json,
            false,
            derived::<DeviceAuthorization>(),
        ),
        (
            "post",
            "/api/v1/auth/device/code",
            "400",
            json,
            false,
            derived::<OAuthError>(),
        ),
        (
            "post",
            "/api/v1/auth/device/code",
            "request",
            form,
            false,
            derived::<DeviceCodeForm>(),
        ),
        (
            "post",
            "/api/v1/auth/token",
            "200",
            json,
            false,
            derived::<TokenResponse>(),
        ),
        (
            "post",
            "/api/v1/auth/token",
            "400",
            json,
            false,
            derived::<OAuthError>(),
        ),
        (
            "post",
            "/api/v1/auth/token",
            "request",
            form,
            false,
            derived::<TokenForm>(),
        ),
    ];
    for (method, path, status, ctype, array, (name, schema)) in cases {
        let op = &doc["paths"][path][method];
        let content = match status {
            "request" => &op["requestBody"]["content"][ctype],
            s => &op["responses"][s]["content"][ctype],
        };
        let (documented_name, documented_array, component) = documented(&doc, &content["schema"]);
        assert_eq!(
            (documented_name, documented_array),
            (name.as_str(), array),
            "{method} {path} {status}"
        );
        assert_eq!(component, &schema, "{method} {path} {status}: {name}");
    }
    // The query parameters are the API types' too.
    let days = &doc["paths"]["/api/v1/me/usage"]["get"]["parameters"][0];
    assert_eq!(
        (&days["name"], &days["schema"]["type"]),
        (&json!("days"), &json!("integer"))
    );
    let code = &doc["paths"]["/api/v1/auth/device/request"]["get"]["parameters"][0];
    assert_eq!(
        (&code["name"], &code["required"]),
        (&json!("user_code"), &json!(true))
    );
}

/// Every JSON 2xx answer of every `/api/v1` operation in the document (account, billing,
/// admin, device flow) is the schema of the `tokengate_api` type its handler returns:
/// the table below names that type per operation id, the test checks it covers every
/// operation the document lists (a new route must be added here) and that each
/// documented component is exactly what the type derives.
#[test]
fn every_api_v1_answer_is_the_schema_of_its_handlers_type() {
    let doc: Value = serde_json::from_str(&tokengate_server::docs::openapi_json()).unwrap();
    let table: Vec<(&str, bool, (String, Value))> = vec![
        (
            "admin_list_aliases",
            true,
            derived::<tokengate_api::admin::AliasView>(),
        ),
        (
            "admin_get_alias",
            false,
            derived::<tokengate_api::admin::AliasView>(),
        ),
        (
            "admin_put_alias",
            false,
            derived::<tokengate_api::admin::AliasView>(),
        ),
        (
            "admin_delete_alias",
            false,
            derived::<tokengate_api::admin::Deleted>(),
        ),
        (
            "admin_alias_dry_run",
            false,
            derived::<tokengate_api::admin::DryRun>(),
        ),
        (
            "admin_health",
            false,
            derived::<tokengate_api::admin::HealthReport>(),
        ),
        (
            "admin_list_key_groups",
            true,
            derived::<tokengate_api::admin::KeyGroupView>(),
        ),
        (
            "admin_get_key_group",
            false,
            derived::<tokengate_api::admin::KeyGroupView>(),
        ),
        (
            "admin_put_key_group",
            false,
            derived::<tokengate_api::admin::KeyGroupView>(),
        ),
        (
            "admin_delete_key_group",
            false,
            derived::<tokengate_api::admin::Deleted>(),
        ),
        (
            "admin_verify_ledger",
            false,
            derived::<tokengate_api::admin::LedgerVerify>(),
        ),
        (
            "admin_list_models",
            true,
            derived::<tokengate_api::admin::AdminModelView>(),
        ),
        (
            "admin_get_model",
            false,
            derived::<tokengate_api::admin::AdminModelView>(),
        ),
        (
            "admin_put_model",
            false,
            derived::<tokengate_api::admin::AdminModelView>(),
        ),
        (
            "admin_delete_model",
            false,
            derived::<tokengate_api::admin::Deleted>(),
        ),
        (
            "admin_list_providers",
            true,
            derived::<tokengate_api::admin::ProviderView>(),
        ),
        (
            "admin_get_provider",
            false,
            derived::<tokengate_api::admin::ProviderView>(),
        ),
        (
            "admin_put_provider",
            false,
            derived::<tokengate_api::admin::ProviderView>(),
        ),
        (
            "admin_delete_provider",
            false,
            derived::<tokengate_api::admin::Deleted>(),
        ),
        (
            "admin_test_provider",
            false,
            derived::<tokengate_api::admin::ProviderTest>(),
        ),
        (
            "admin_request_logs",
            false,
            derived::<tokengate_api::admin::AdminRequestLogPage>(),
        ),
        (
            "admin_search_users",
            true,
            derived::<tokengate_api::admin::AdminUserView>(),
        ),
        (
            "admin_credit_user",
            false,
            derived::<tokengate_api::admin::CreditResult>(),
        ),
        (
            "admin_user_ledger",
            false,
            derived::<tokengate_api::admin::UserLedger>(),
        ),
        (
            "admin_reactivate_user",
            false,
            derived::<tokengate_api::admin::UserStatusChange>(),
        ),
        (
            "admin_suspend_user",
            false,
            derived::<tokengate_api::admin::UserStatusChange>(),
        ),
        (
            "device_authorization",
            false,
            derived::<tokengate_api::device::DeviceAuthorization>(),
        ),
        (
            "get_device_request",
            false,
            derived::<tokengate_api::account::DeviceRequestView>(),
        ),
        (
            "discovery",
            false,
            derived::<tokengate_api::device::Discovery>(),
        ),
        (
            "token",
            false,
            derived::<tokengate_api::device::TokenResponse>(),
        ),
        (
            "get_balance",
            false,
            derived::<tokengate_api::account::Balance>(),
        ),
        ("get_me", false, derived::<tokengate_api::account::Me>()),
        ("update_me", false, derived::<tokengate_api::account::Me>()),
        (
            "list_payments",
            true,
            derived::<tokengate_api::billing::PaymentView>(),
        ),
        (
            "get_statement",
            false,
            derived::<tokengate_api::billing::StatementView>(),
        ),
        (
            "list_keys",
            true,
            derived::<tokengate_api::account::ApiKeyView>(),
        ),
        (
            "create_key",
            false,
            derived::<tokengate_api::account::CreatedKey>(),
        ),
        (
            "get_key",
            false,
            derived::<tokengate_api::account::ApiKeyView>(),
        ),
        (
            "revoke_key",
            false,
            derived::<tokengate_api::account::RevokedKey>(),
        ),
        (
            "update_key",
            false,
            derived::<tokengate_api::account::ApiKeyView>(),
        ),
        (
            "rotate_key",
            false,
            derived::<tokengate_api::account::CreatedKey>(),
        ),
        (
            "logout_everywhere",
            false,
            derived::<tokengate_api::account::SignedOut>(),
        ),
        (
            "list_request_logs",
            false,
            derived::<tokengate_api::billing::RequestLogPage>(),
        ),
        (
            "get_request_log",
            false,
            derived::<tokengate_api::billing::RequestLog>(),
        ),
        (
            "list_sessions",
            true,
            derived::<tokengate_api::account::SessionInfo>(),
        ),
        (
            "get_usage",
            false,
            derived::<tokengate_api::account::UsageSummary>(),
        ),
        (
            "get_usage_daily",
            false,
            derived::<tokengate_api::account::UsageDaily>(),
        ),
        (
            "create_topup",
            false,
            derived::<tokengate_api::billing::Checkout>(),
        ),
    ];
    let mut documented_ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let Some(responses) = op["responses"].as_object() else {
                continue;
            };
            let id = op["operationId"].as_str().unwrap();
            for (status, resp) in responses {
                let Some(body) = resp["content"]["application/json"]["schema"].as_object() else {
                    continue;
                };
                if !status.starts_with('2') {
                    continue;
                }
                let body = Value::Object(body.clone());
                let (name, array, schema) = documented(&doc, &body);
                let Some((_, want_array, (want_name, want_schema))) =
                    table.iter().find(|(op_id, _, _)| *op_id == id)
                else {
                    panic!("{method} {path} ({id}) answers {name} but is not in the table");
                };
                assert_eq!(
                    (name, array),
                    (want_name.as_str(), *want_array),
                    "{method} {path} ({id}) {status}"
                );
                assert_eq!(
                    schema, want_schema,
                    "{method} {path} ({id}): component {name}"
                );
                documented_ops.push(id.to_string());
            }
        }
    }
    for (id, _, _) in &table {
        assert!(
            documented_ops.iter().any(|d| d == id),
            "{id} is in the table but answers no JSON 2xx body in the document"
        );
    }
    assert_eq!(documented_ops.len(), table.len(), "{documented_ops:?}");
}
