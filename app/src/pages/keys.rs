//! `/me/keys`: the API keys page — list, create (the secret shown once, in a dialog with
//! a copy button and ready-to-paste environment lines), rename, disable/enable, rotate and
//! revoke with confirmation. The create form is a plain form post to `/me/keys/new`
//! without JavaScript; hydrated, it opens the dialog in place.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde_json::Value;
use tokengate_api::account::{ApiKeyView, CreateKeyRequest, CreatedKey, UpdateKeyRequest};
use tokengate_api::kinds::KeyStatus;
use tokengate_api::{Timestamp, Usd};

use crate::api;
use crate::session::load_sign_in_options;
use crate::ui::{CopyButton, Dialog, Empty, ErrorBox, Signed, Time};

/// A secret to show once: (title, key name, raw secret).
type Revealed = Option<(String, String, String)>;

/// The JSON body of `POST /api/v1/me/keys` for the create form's values (by field name),
/// at `now_secs`; `Err` says which field is wrong. The server's no-JS form endpoint uses it
/// too, so both paths accept exactly the same input.
pub fn create_body(fields: &[(&str, String)], now_secs: i64) -> Result<Value, String> {
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut body = CreateKeyRequest {
        name: get("name"),
        ..Default::default()
    };
    let days = get("expires_in_days");
    if !days.is_empty() {
        let d: i64 = days
            .parse()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or("Expiry must be a number of days from 1 to 3650.")?;
        body.expires_at = Some(Timestamp((now_secs + d * 86_400) * 1000));
    }
    let limit = get("spend_limit_usd");
    if !limit.is_empty() {
        let usd: Usd = limit
            .trim_start_matches('$')
            .parse()
            .map_err(|_| "Spend limit must be an amount in USD, e.g. 10.00.".to_string())?;
        body.spend_limit_usd = Some(usd);
    }
    let models: Vec<String> = get("models")
        .split([',', '\n', ' '])
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    if !models.is_empty() {
        body.models = Some(models);
    }
    let group = get("group");
    if !group.is_empty() {
        body.group = Some(group);
    }
    let positive = |field: &str| -> Result<Option<i64>, String> {
        let v = get(field);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse().ok().filter(|n| *n > 0).map(Some).ok_or(format!(
            "{} must be a positive number.",
            field.to_uppercase()
        ))
    };
    body.rpm = positive("rpm")?;
    body.tpm = positive("tpm")?;
    serde_json::to_value(&body).map_err(|e| e.to_string())
}

#[cfg(feature = "hydrate")]
fn js_now_secs() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

/// Reads the named fields of the submitted form.
#[cfg(feature = "hydrate")]
fn form_fields(
    ev: &leptos::ev::SubmitEvent,
    names: &[&'static str],
) -> Vec<(&'static str, String)> {
    use wasm_bindgen::JsCast;
    let Some(form) = ev
        .target()
        .and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok())
    else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|n| {
            let el = form.elements().named_item(n)?;
            let value = el
                .dyn_ref::<web_sys::HtmlInputElement>()
                .map(|i| i.value())
                .or_else(|| {
                    el.dyn_ref::<web_sys::HtmlTextAreaElement>()
                        .map(|t| t.value())
                })?;
            Some((*n, value))
        })
        .collect()
}

#[cfg(feature = "hydrate")]
const FIELDS: [&str; 7] = [
    "name",
    "expires_in_days",
    "spend_limit_usd",
    "models",
    "group",
    "rpm",
    "tpm",
];

#[component]
pub fn KeysPage() -> impl IntoView {
    view! {
        <Signed title="API keys" path="/me/keys" render=|_| view! { <Keys/> }/>
    }
}

#[component]
fn Keys() -> impl IntoView {
    let query = use_query_map();
    let (version, set_version) = signal(0u32);
    let keys = Resource::new(
        move || version.get(),
        |_| api::get_as::<Vec<ApiKeyView>>("/me/keys".into()),
    );
    let options = Resource::new(
        || (),
        |_| async { load_sign_in_options().await.unwrap_or_default() },
    );
    let (revealed, set_revealed) = signal::<Revealed>(None);
    let (error, set_error) = signal::<Option<String>>(None);
    let (confirm, set_confirm) = signal::<Option<(String, i64, String)>>(None); // action, id, name
    let reload = move || set_version.update(|v| *v += 1);

    let form = NodeRef::<leptos::html::Form>::new();
    let create = Action::new(move |body: &Value| {
        let body = body.clone();
        async move { api::call_as::<CreatedKey>("POST", "/me/keys", Some(body)).await }
    });
    Effect::new(move |_| {
        if let Some(r) = create.value().get() {
            match r {
                Ok(k) => {
                    set_error.set(None);
                    if let Some(f) = form.get_untracked() {
                        f.reset();
                    }
                    set_revealed.set(Some(("Your new API key".into(), k.name, k.raw)));
                    reload();
                }
                Err(e) => set_error.set(Some(e)),
            }
        }
    });
    let act = Action::new(
        move |(method, path, body): &(String, String, Option<Value>)| {
            let (method, path, body) = (method.clone(), path.clone(), body.clone());
            async move { api::call(&method, &path, body).await }
        },
    );
    Effect::new(move |_| {
        if let Some(r) = act.value().get() {
            // A rotation answers with the key and its new secret.
            match r.map(serde_json::from_value::<CreatedKey>) {
                Ok(Ok(k)) => {
                    set_revealed.set(Some(("Your rotated API key".into(), k.name, k.raw)));
                    set_error.set(None);
                    reload();
                }
                Ok(_) => {
                    set_error.set(None);
                    reload();
                }
                Err(e) => set_error.set(Some(e)),
            }
        }
    });

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        #[cfg(feature = "hydrate")]
        {
            ev.prevent_default();
            match create_body(&form_fields(&ev, &FIELDS), js_now_secs()) {
                Ok(body) => {
                    create.dispatch(body);
                }
                Err(m) => set_error.set(Some(m)),
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };

    view! {
        <section class="card">
            <h1>"API keys"</h1>
            <p class="muted">"Use a key as a bearer token on "<code>"/v1"</code>" with any OpenAI or Anthropic SDK. The secret is shown once, when the key is created or rotated."</p>
            {move || query.read().get("error").map(|e| view! { <ErrorBox message=e/> })}
            {move || error.get().map(|e| view! { <ErrorBox message=e/> })}
            <details class="create" open=move || query.read().get("create").is_some()>
                <summary class="button">"Create API key"</summary>
                <form method="post" action="/me/keys/new" class="grid-form" on:submit=on_submit id="create-key-form" node_ref=form>
                    <label for="key-name">"Name"</label>
                    <input id="key-name" name="name" type="text" required maxlength="100" placeholder="e.g. laptop, ci"/>
                    <label for="key-expiry">"Expires after (days, optional)"</label>
                    <input id="key-expiry" name="expires_in_days" type="number" min="1" max="3650"/>
                    <label for="key-limit">"Spend limit in USD (optional)"</label>
                    <input id="key-limit" name="spend_limit_usd" type="text" inputmode="decimal" placeholder="10.00"/>
                    <label for="key-models">"Allowed models (optional, comma-separated; provider/* allowed)"</label>
                    <input id="key-models" name="models" type="text" placeholder="tokengate-fast, openai/*"/>
                    <label for="key-group">"Key group (optional)"</label>
                    <input id="key-group" name="group" type="text"/>
                    <label for="key-rpm">"Requests per minute (optional)"</label>
                    <input id="key-rpm" name="rpm" type="number" min="1"/>
                    <label for="key-tpm">"Tokens per minute (optional)"</label>
                    <input id="key-tpm" name="tpm" type="number" min="1"/>
                    <button class="button" type="submit" id="create-key-submit">"Create key"</button>
                </form>
            </details>
        </section>

        <section class="card">
            <Suspense fallback=|| view! { <p class="loading">"Loading keys…"</p> }>
                {move || Suspend::new(async move {
                    match keys.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok(list) => {
                            if list.is_empty() {
                                return view! { <Empty text="No API keys yet. Create one to make your first call."/> }.into_any();
                            }
                            view! {
                                <div class="table-wrap"><table id="keys-table">
                                    <thead><tr>
                                        <th>"Name"</th><th>"Key"</th><th>"Status"</th><th>"Group"</th>
                                        <th>"Spend (limit)"</th><th>"Last used"</th><th>"Expires"</th><th>"Created"</th><th>"Actions"</th>
                                    </tr></thead>
                                    <tbody>
                                        {list.into_iter().map(|k| key_row(k, act, set_confirm)).collect_view()}
                                    </tbody>
                                </table></div>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>

        {move || confirm.get().map(|(action, id, name)| {
            let close = move |_| set_confirm.set(None);
            let (title, body, button) = match action.as_str() {
                "revoke" => ("Revoke this key?".to_string(),
                    format!("Requests with “{name}” will fail with 401 at once. This cannot be undone."), "Revoke key"),
                _ => ("Rotate this key?".to_string(),
                    format!("“{name}” gets a new secret; the old one stops working at once."), "Rotate key"),
            };
            let go = move |_| {
                let req = if action == "revoke" {
                    ("DELETE".to_string(), format!("/me/keys/{id}"), None)
                } else {
                    ("POST".to_string(), format!("/me/keys/{id}/rotate"), None)
                };
                act.dispatch(req);
                set_confirm.set(None);
            };
            view! {
                <Dialog title=title on_close=move |_| set_confirm.set(None)>
                    <p>{body}</p>
                    <div class="row">
                        <button class="button danger" id="confirm-action" autofocus on:click=go>{button}</button>
                        <button class="button secondary" on:click=close>"Cancel"</button>
                    </div>
                </Dialog>
            }
        })}

        {move || revealed.get().map(|(title, name, raw)| {
            let base = options.get().map(|o| o.public_url).unwrap_or_default();
            let env = format!("OPENAI_API_KEY={raw}\nOPENAI_BASE_URL={base}/v1");
            view! {
                <Dialog title=title on_close=move |_| set_revealed.set(None)>
                    <p class="warning"><strong>"Copy it now: this is the only time it is shown."</strong>
                        " tokengate keeps only a hash of “" {name} "”; no page, API or reload can show it again."</p>
                    <p class="label">"API key"</p>
                    <div class="row secret"><pre><code id="new-key-secret">{raw.clone()}</code></pre><CopyButton text=raw.clone() id="copy-secret"/></div>
                    <p class="label">"Environment"</p>
                    <div class="row secret"><pre><code id="new-key-env">{env.clone()}</code></pre><CopyButton text=env.clone()/></div>
                    <button class="button" id="close-secret" autofocus on:click=move |_| set_revealed.set(None)>"I have copied it"</button>
                </Dialog>
            }
        })}
    }
}

/// A time for `<Time>` ("" for none).
fn iso(t: Option<Timestamp>) -> String {
    t.map(|t| t.rfc3339()).unwrap_or_default()
}

/// A JSON body for `PATCH /api/v1/me/keys/{id}`.
fn patch_body(p: UpdateKeyRequest) -> Option<Value> {
    serde_json::to_value(p).ok()
}

fn key_row(
    k: ApiKeyView,
    act: Action<(String, String, Option<Value>), Result<Value, String>>,
    set_confirm: WriteSignal<Option<(String, i64, String)>>,
) -> impl IntoView {
    let id = k.id;
    let name = k.name.clone();
    let status = k.status;
    let active = status == KeyStatus::Active;
    let revoked = status == KeyStatus::Revoked;
    let (renaming, set_renaming) = signal(false);
    let (new_name, set_new_name) = signal(name.clone());
    let spend = match k.spend_limit_usd {
        None => format!("${}", k.spent_usd),
        Some(limit) => format!("${} (of ${limit})", k.spent_usd),
    };
    let group = k.group_id.map(|g| format!("#{g}")).unwrap_or_default();
    let name_for_confirm = name.clone();
    let name_for_rotate = name.clone();
    view! {
        <tr data-key-id=id class=if revoked { "revoked" } else { "" }>
            <td>
                <Show when=move || renaming.get() fallback=move || view! { <span class="key-name">{new_name.get()}</span> }>
                    <form class="row" on:submit=move |ev: leptos::ev::SubmitEvent| {
                        ev.prevent_default();
                        let patch = UpdateKeyRequest { name: Some(new_name.get_untracked()), ..Default::default() };
                        act.dispatch(("PATCH".into(), format!("/me/keys/{id}"), patch_body(patch)));
                        set_renaming.set(false);
                    }>
                        <label class="sr-only" for=format!("rename-{id}")>"New name"</label>
                        <input id=format!("rename-{id}") type="text" prop:value=move || new_name.get()
                            on:input=move |ev| set_new_name.set(event_target_value(&ev))/>
                        <button class="button small" type="submit">"Save"</button>
                    </form>
                </Show>
            </td>
            <td><code>{k.key_prefix.clone()}"…"</code></td>
            <td><span class=format!("status {status}")>{status.to_string()}</span></td>
            <td>{group}</td>
            <td>{spend}</td>
            <td><Time iso=iso(k.last_used_at)/></td>
            <td><Time iso=iso(k.expires_at)/></td>
            <td><Time iso=iso(Some(k.created_at))/></td>
            <td class="actions">
                {(!revoked).then(|| view! {
                    <button class="button secondary small" on:click=move |_| set_renaming.update(|r| *r = !*r)>"Rename"</button>
                    <button class="button secondary small" on:click=move |_| {
                        let next = if active { KeyStatus::Disabled } else { KeyStatus::Active };
                        let patch = UpdateKeyRequest { status: Some(next), ..Default::default() };
                        act.dispatch(("PATCH".into(), format!("/me/keys/{id}"), patch_body(patch)));
                    }>{if active { "Disable" } else { "Enable" }}</button>
                    <button class="button secondary small" on:click=move |_| set_confirm.set(Some(("rotate".into(), id, name_for_rotate.clone())))>"Rotate"</button>
                    <button class="button danger small revoke" on:click=move |_| set_confirm.set(Some(("revoke".into(), id, name_for_confirm.clone())))>"Revoke"</button>
                })}
            </td>
        </tr>
    }
}
