//! The admin console (`/admin/...`, role admin; the server answers 403 to anyone else and
//! the API refuses them too): providers (write-only keys shown as set/unset, enable or
//! disable, test connection), models and prices, aliases (tiers, targets, weights) with a
//! dry run, key groups, users (search, suspend/reactivate, credit with a reason),
//! provider health and failed requests. Every answer is read as its
//! `tokengate_api::admin` type and every change is sent as one.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde::Serialize;
use serde_json::{Value, json};
use tokengate_api::admin::{
    AdminModelView, AdminRequestLogPage, AdminUserView, AliasRequest, AliasTargetRequest,
    AliasView, DryRun, HealthReport, KeyGroupRequest, KeyGroupView, ProviderRequest, ProviderTest,
    ProviderView,
};
use tokengate_api::kinds::{ProviderKind, UserStatus};

use crate::api::{self, enc};
use crate::ui::{Empty, ErrorBox, Signed, Time};

/// The wire word of an enum (`"half_open"`, `"set"`, `"openai"`).
fn word<T: Serialize>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A JSON body of a typed request.
fn body<T: Serialize>(t: &T) -> Option<Value> {
    serde_json::to_value(t).ok()
}

/// The admin section's navigation.
#[component]
fn AdminNav() -> impl IntoView {
    view! {
        <nav class="subnav" aria-label="Admin">
            <a href="/admin/providers">"Providers"</a>
            <a href="/admin/models">"Models"</a>
            <a href="/admin/aliases">"Aliases"</a>
            <a href="/admin/key-groups">"Key groups"</a>
            <a href="/admin/users">"Users"</a>
            <a href="/admin/health">"Health"</a>
            <a href="/admin/failed-requests">"Failed requests"</a>
        </nav>
    }
}

/// One API call: (method, path, JSON body).
type Call = (String, String, Option<Value>);
/// The action running [`Call`]s, and the outcome of the latest.
type Runner = (
    Action<Call, Result<Value, String>>,
    Signal<Option<Result<Value, String>>>,
);

/// Runs one admin API call and reports its outcome in `status`.
fn runner(reload: WriteSignal<u32>) -> Runner {
    let act = Action::new(move |(m, p, b): &Call| {
        let (m, p, b) = (m.clone(), p.clone(), b.clone());
        async move {
            let r = api::call(&m, &p, b).await;
            reload.update(|v| *v += 1);
            r
        }
    });
    let value = act.value();
    (act, Signal::derive(move || value.get()))
}

fn outcome(o: Option<Result<Value, String>>) -> Option<AnyView> {
    o.map(|r| match r {
        Ok(v) => match (
            serde_json::from_value::<DryRun>(v.clone()),
            serde_json::from_value::<ProviderTest>(v),
        ) {
            // A dry run: the verdict, then each tier's targets and why each is (not) usable.
            (Ok(d), _) => view! {
                <div class="notice" role="status" id="dry-run">
                    <p><strong>{d.alias}": "</strong>{d.verdict}</p>
                    <ul>{d.tiers.into_iter().map(|t| view! {
                        <li>"Priority " {t.priority} {if t.serves { " (serves now)" } else { "" }} ": "
                            {t.targets.iter().map(|x| format!(
                                "{} — {}{}", x.model,
                                if x.usable { "usable" } else { "not usable" },
                                if x.reason.is_empty() { String::new() } else { format!(" ({})", x.reason) }
                            )).collect::<Vec<_>>().join("; ")}
                        </li>
                    }).collect_view()}</ul>
                </div>
            }
            .into_any(),
            // A connection test.
            (_, Ok(t)) => {
                let latency = t.latency_ms.map(|l| format!(" ({l} ms)")).unwrap_or_default();
                view! {
                    <p class=if t.ok { "notice" } else { "alert" } role="status" id="connection-test">
                        <strong>{t.provider}": "</strong>{t.message}{latency}
                    </p>
                }
                .into_any()
            }
            _ => view! { <p class="notice" role="status">"Saved."</p> }.into_any(),
        },
        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
    })
}

fn list_view<T, F, V>(r: Result<Vec<T>, String>, empty: &'static str, f: F) -> AnyView
where
    F: Fn(Vec<T>) -> V,
    V: IntoView + 'static,
{
    match r {
        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
        Ok(list) if list.is_empty() => view! { <Empty text=empty/> }.into_any(),
        Ok(list) => f(list).into_any(),
    }
}

fn input_value(ev: &leptos::ev::Event) -> String {
    event_target_value(ev)
}

#[component]
pub fn AdminHome() -> impl IntoView {
    view! {
        <Signed title="Admin" path="/admin" admin=true render=|_| view! {
                <section class="card"><h1>"Admin console"</h1><AdminNav/>
                    <p>"Manage providers, models, routing aliases, key groups and users, and watch provider health."</p>
                </section>
            }/>
    }
}

// ----- providers -----------------------------------------------------------------------

#[component]
pub fn ProvidersPage() -> impl IntoView {
    view! { <Signed title="Providers" path="/admin/providers" admin=true render=|_| view! { <Providers/> }/> }
}

#[component]
fn Providers() -> impl IntoView {
    let (version, set_version) = signal(0u32);
    let list = Resource::new(
        move || version.get(),
        |_| api::get_as::<Vec<ProviderView>>("/admin/providers".into()),
    );
    let (act, status) = runner(set_version);
    let (name, set_name) = signal(String::new());
    let (kind, set_kind) = signal("openai".to_string());
    let (base, set_base) = signal(String::new());
    let (key, set_key) = signal(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let b = base.get_untracked();
        let k = key.get_untracked();
        let request = ProviderRequest {
            kind: kind.get_untracked().parse().unwrap_or(ProviderKind::OpenAi),
            base_url: Some(b.trim().to_string()).filter(|b| !b.is_empty()),
            api_key: (!k.is_empty()).then_some(Some(k)),
            config: None,
            enabled: true,
        };
        act.dispatch((
            "PUT".into(),
            format!("/admin/providers/{}", enc(name.get_untracked().trim())),
            body(&request),
        ));
        set_key.set(String::new());
    };
    view! {
        <section class="card"><h1>"Providers"</h1><AdminNav/>
            {move || outcome(status.get())}
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    list_view(list.await, "No providers yet.", |l| view! {
                        <div class="table-wrap"><table id="providers-table">
                            <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Base URL"</th><th>"Key"</th><th>"Enabled"</th><th>"Actions"</th></tr></thead>
                            <tbody>{l.into_iter().map(|p| {
                                let n = p.name.clone();
                                let enabled = p.enabled;
                                // Enabling or disabling keeps the kind, base URL, settings and key.
                                let toggle = body(&ProviderRequest {
                                    kind: p.kind,
                                    base_url: p.base_url.clone(),
                                    api_key: None,
                                    config: Some(p.config.clone()),
                                    enabled: !enabled,
                                });
                                let (n1, n2) = (n.clone(), n.clone());
                                view! { <tr>
                                    <td>{n.clone()}</td><td>{p.kind.as_str()}</td><td><code>{p.base_url.clone().unwrap_or_default()}</code></td>
                                    <td>{word(&p.api_key)}</td><td>{if enabled { "yes" } else { "no" }}</td>
                                    <td class="actions">
                                        <button class="button secondary small" on:click=move |_| { act.dispatch(("POST".into(), format!("/admin/providers/{}/test", enc(&n1)), None)); }>"Test connection"</button>
                                        <button class="button secondary small" on:click=move |_| { act.dispatch(("PUT".into(), format!("/admin/providers/{}", enc(&n2)), toggle.clone())); }>{if enabled { "Disable" } else { "Enable" }}</button>
                                    </td>
                                </tr> }
                            }).collect_view()}</tbody>
                        </table></div>
                    })
                })}
            </Suspense>
        </section>
        <section class="card"><h2>"Add or update a provider"</h2>
            <form class="grid-form" id="provider-form" on:submit=submit>
                <label for="p-name">"Name"</label><input id="p-name" required on:input=move |e| set_name.set(input_value(&e))/>
                <label for="p-kind">"Kind"</label>
                <select id="p-kind" on:change=move |e| set_kind.set(input_value(&e))>
                    <option value="openai">"openai (any OpenAI-compatible server)"</option>
                    <option value="anthropic">"anthropic"</option>
                    <option value="mock">"mock"</option>
                </select>
                <label for="p-base">"Base URL"</label><input id="p-base" placeholder="https://api.openai.com/v1" on:input=move |e| set_base.set(input_value(&e))/>
                <label for="p-key">"API key (write-only; leave empty to keep)"</label><input id="p-key" type="password" autocomplete="off" prop:value=move || key.get() on:input=move |e| set_key.set(input_value(&e))/>
                <button class="button" type="submit">"Save provider"</button>
            </form>
        </section>
    }
}

// ----- models --------------------------------------------------------------------------

#[component]
pub fn ModelsPage() -> impl IntoView {
    view! { <Signed title="Models" path="/admin/models" admin=true render=|_| view! { <Models/> }/> }
}

#[component]
fn Models() -> impl IntoView {
    let (version, set_version) = signal(0u32);
    let list = Resource::new(
        move || version.get(),
        |_| api::get_as::<Vec<AdminModelView>>("/admin/models".into()),
    );
    let (act, status) = runner(set_version);
    let fields = [
        "name",
        "provider",
        "upstream_model",
        "input_usd_per_m",
        "output_usd_per_m",
        "max_output_tokens",
    ];
    let values = fields.map(|_| signal(String::new()));
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let get = |i: usize| values[i].0.get_untracked().trim().to_string();
        let mut body = json!({"provider": get(1), "upstream_model": get(2),
            "input_usd_per_m": get(3), "output_usd_per_m": get(4)});
        if let Ok(m) = get(5).parse::<i64>() {
            body["max_output_tokens"] = json!(m);
        }
        act.dispatch((
            "PUT".into(),
            format!("/admin/models/{}", get(0)),
            Some(body),
        ));
    };
    view! {
        <section class="card"><h1>"Models and prices"</h1><AdminNav/>
            {move || outcome(status.get())}
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    list_view(list.await, "No models yet.", |l| view! {
                        <div class="table-wrap"><table id="models-table">
                            <thead><tr><th>"Model"</th><th>"Provider"</th><th>"Upstream"</th><th>"Input $/M"</th><th>"Output $/M"</th><th>"Max out"</th><th>"Enabled"</th></tr></thead>
                            <tbody>{l.into_iter().map(|m| view! { <tr>
                                <td>{m.name}</td><td>{m.provider.unwrap_or_default()}</td><td>{m.upstream_model}</td>
                                <td>{m.input_usd_per_m.to_string()}</td><td>{m.output_usd_per_m.to_string()}</td>
                                <td>{m.max_output_tokens}</td><td>{if m.enabled { "yes" } else { "no" }}</td>
                            </tr> }).collect_view()}</tbody>
                        </table></div>
                    })
                })}
            </Suspense>
        </section>
        <section class="card"><h2>"Add or update a model"</h2>
            <form class="grid-form" id="model-form" on:submit=submit>
                {fields.into_iter().enumerate().map(|(i, f)| {
                    let set = values[i].1;
                    let label = match f {
                        "name" => "Name (provider/model)", "provider" => "Provider", "upstream_model" => "Upstream model id",
                        "input_usd_per_m" => "Input price, USD per million tokens", "output_usd_per_m" => "Output price, USD per million tokens",
                        _ => "Max output tokens",
                    };
                    view! { <label for=format!("m-{f}")>{label}</label><input id=format!("m-{f}") required=i < 5 on:input=move |e| set.set(input_value(&e))/> }
                }).collect_view()}
                <button class="button" type="submit">"Save model"</button>
            </form>
        </section>
    }
}

// ----- aliases -------------------------------------------------------------------------

#[component]
pub fn AliasesPage() -> impl IntoView {
    view! { <Signed title="Aliases" path="/admin/aliases" admin=true render=|_| view! { <Aliases/> }/> }
}

/// Parses "model priority weight" lines.
fn parse_targets(s: &str) -> Result<Vec<AliasTargetRequest>, String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            let model = parts.first().ok_or("empty line")?;
            let num = |i: usize, d: i64| -> Result<i64, String> {
                parts.get(i).map_or(Ok(d), |p| {
                    p.parse()
                        .map_err(|_| format!("{l:?}: priority and weight are whole numbers"))
                })
            };
            Ok(AliasTargetRequest {
                model: model.to_string(),
                priority: num(1, 0)?,
                weight: num(2, 1)?,
            })
        })
        .collect()
}

#[component]
fn Aliases() -> impl IntoView {
    let (version, set_version) = signal(0u32);
    let list = Resource::new(
        move || version.get(),
        |_| api::get_as::<Vec<AliasView>>("/admin/aliases".into()),
    );
    let (act, status) = runner(set_version);
    let (name, set_name) = signal(String::new());
    let (targets, set_targets) = signal(String::new());
    let (error, set_error) = signal::<Option<String>>(None);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match parse_targets(&targets.get_untracked()) {
            Ok(t) => {
                set_error.set(None);
                act.dispatch((
                    "PUT".into(),
                    format!("/admin/aliases/{}", enc(name.get_untracked().trim())),
                    body(&AliasRequest {
                        description: String::new(),
                        complexity_tier: "standard".into(),
                        targets: t,
                    }),
                ));
            }
            Err(e) => set_error.set(Some(e)),
        }
    };
    view! {
        <section class="card"><h1>"Routing aliases"</h1><AdminNav/>
            {move || outcome(status.get())}
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    list_view(list.await, "No aliases yet.", |l| view! {
                        <div class="table-wrap"><table id="aliases-table">
                            <thead><tr><th>"Alias"</th><th>"Targets (model · priority · weight)"</th><th>"Actions"</th></tr></thead>
                            <tbody>{l.into_iter().map(|a| {
                                let n = a.name.clone();
                                let lines = a.targets.iter()
                                    .map(|t| format!("{} {} {}", t.model.as_deref().unwrap_or(""), t.priority, t.weight))
                                    .collect::<Vec<_>>().join("\n");
                                let (n1, n2, l2) = (n.clone(), n.clone(), lines.clone());
                                view! { <tr>
                                    <td>{n.clone()}</td><td><pre><code>{lines}</code></pre></td>
                                    <td class="actions">
                                        <button class="button secondary small" on:click=move |_| { act.dispatch(("GET".into(), format!("/admin/aliases/{}/dry-run", enc(&n1)), None)); }>"Dry run"</button>
                                        <button class="button secondary small" on:click=move |_| { set_name.set(n2.clone()); set_targets.set(l2.clone()); }>"Edit"</button>
                                    </td>
                                </tr> }
                            }).collect_view()}</tbody>
                        </table></div>
                    })
                })}
            </Suspense>
        </section>
        <section class="card"><h2>"Add or edit an alias"</h2>
            {move || error.get().map(|e| view! { <ErrorBox message=e/> })}
            <form class="grid-form" id="alias-form" on:submit=submit>
                <label for="a-name">"Alias name"</label>
                <input id="a-name" required prop:value=move || name.get() on:input=move |e| set_name.set(input_value(&e))/>
                <label for="a-targets">"Targets: one per line, “model priority weight” (lower priority is tried first; weights share traffic within a tier)"</label>
                <textarea id="a-targets" rows="5" prop:value=move || targets.get() on:input=move |e| set_targets.set(input_value(&e))></textarea>
                <button class="button" type="submit">"Save alias"</button>
            </form>
        </section>
    }
}

// ----- key groups ----------------------------------------------------------------------

#[component]
pub fn GroupsPage() -> impl IntoView {
    view! { <Signed title="Key groups" path="/admin/key-groups" admin=true render=|_| view! { <Groups/> }/> }
}

fn split_list(s: &str) -> Option<Vec<String>> {
    let v: Vec<String> = s
        .split([',', '\n', ' '])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect();
    (!v.is_empty()).then_some(v)
}

#[component]
fn Groups() -> impl IntoView {
    let (version, set_version) = signal(0u32);
    let list = Resource::new(
        move || version.get(),
        |_| api::get_as::<Vec<KeyGroupView>>("/admin/key-groups".into()),
    );
    let (act, status) = runner(set_version);
    let (name, set_name) = signal(String::new());
    let (providers, set_providers) = signal(String::new());
    let (models, set_models) = signal(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let request = KeyGroupRequest {
            allowed_providers: split_list(&providers.get_untracked()),
            allowed_models: split_list(&models.get_untracked()),
        };
        act.dispatch((
            "PUT".into(),
            format!("/admin/key-groups/{}", enc(name.get_untracked().trim())),
            body(&request),
        ));
    };
    view! {
        <section class="card"><h1>"Key groups"</h1><AdminNav/>
            {move || outcome(status.get())}
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    list_view(list.await, "No key groups yet.", |l| view! {
                        <div class="table-wrap"><table>
                            <thead><tr><th>"Group"</th><th>"Allowed providers"</th><th>"Allowed models"</th></tr></thead>
                            <tbody>{l.into_iter().map(|g| view! { <tr>
                                <td>{g.name}</td><td>{json!(g.allowed_providers).to_string()}</td><td>{json!(g.allowed_models).to_string()}</td>
                            </tr> }).collect_view()}</tbody>
                        </table></div>
                    })
                })}
            </Suspense>
        </section>
        <section class="card"><h2>"Add or update a group"</h2>
            <form class="grid-form" on:submit=submit>
                <label for="g-name">"Name"</label><input id="g-name" required on:input=move |e| set_name.set(input_value(&e))/>
                <label for="g-providers">"Allowed providers (comma-separated; empty = any)"</label><input id="g-providers" on:input=move |e| set_providers.set(input_value(&e))/>
                <label for="g-models">"Allowed models (comma-separated, provider/* allowed; empty = any)"</label><input id="g-models" on:input=move |e| set_models.set(input_value(&e))/>
                <button class="button" type="submit">"Save group"</button>
            </form>
        </section>
    }
}

// ----- users ---------------------------------------------------------------------------

#[component]
pub fn UsersPage() -> impl IntoView {
    view! { <Signed title="Users" path="/admin/users" admin=true render=|_| view! { <Users/> }/> }
}

#[component]
fn Users() -> impl IntoView {
    let query = use_query_map();
    let (version, set_version) = signal(0u32);
    let q = move || query.read().get("q").unwrap_or_default();
    let list = Resource::new(
        move || (q(), version.get()),
        |(q, _)| api::get_as::<Vec<AdminUserView>>(format!("/admin/users?q={}", enc(&q))),
    );
    let (act, status) = runner(set_version);
    let (credit_for, set_credit_for) = signal::<Option<(i64, String)>>(None);
    let (amount, set_amount) = signal(String::new());
    let (kind, set_kind) = signal("adjustment".to_string());
    let (reason, set_reason) = signal(String::new());
    view! {
        <section class="card"><h1>"Users"</h1><AdminNav/>
            <form method="get" action="/admin/users" class="row">
                <label for="q">"Search"</label><input id="q" name="q" type="search" value=q placeholder="email or name"/>
                <button class="button secondary" type="submit">"Search"</button>
            </form>
            {move || outcome(status.get())}
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    list_view(list.await, "No users match.", |l| view! {
                        <div class="table-wrap"><table id="users-table">
                            <thead><tr><th>"Email"</th><th>"Name"</th><th>"Role"</th><th>"Status"</th><th>"Balance (USD)"</th><th>"Actions"</th></tr></thead>
                            <tbody>{l.into_iter().map(|u| {
                                let id = u.id;
                                let active = u.status == UserStatus::Active;
                                let email = u.email.clone();
                                view! { <tr>
                                    <td>{email.clone()}</td><td>{u.display_name.clone()}</td><td>{u.role.as_str()}</td>
                                    <td>{u.status.as_str()}</td><td>{u.balance_usd.to_string()}</td>
                                    <td class="actions">
                                        <button class="button secondary small" on:click=move |_| {
                                            let path = if active { format!("/admin/users/{id}/suspend") } else { format!("/admin/users/{id}/reactivate") };
                                            act.dispatch(("POST".into(), path, None));
                                        }>{if active { "Suspend" } else { "Reactivate" }}</button>
                                        <button class="button secondary small" on:click=move |_| set_credit_for.set(Some((id, email.clone())))>"Credit / debit"</button>
                                    </td>
                                </tr> }
                            }).collect_view()}</tbody>
                        </table></div>
                    })
                })}
            </Suspense>
        </section>
        {move || credit_for.get().map(|(id, email)| view! {
            <section class="card" id="credit-form">
                <h2>"Adjust the balance of " {email}</h2>
                <form class="grid-form" on:submit=move |ev: leptos::ev::SubmitEvent| {
                    ev.prevent_default();
                    act.dispatch(("POST".into(), format!("/admin/users/{id}/credit"),
                        Some(json!({"amount_usd": amount.get_untracked(), "kind": kind.get_untracked(), "reason": reason.get_untracked()}))));
                    set_credit_for.set(None);
                }>
                    <label for="c-amount">"Amount in USD (negative to debit)"</label><input id="c-amount" required on:input=move |e| set_amount.set(input_value(&e))/>
                    <label for="c-kind">"Kind"</label>
                    <select id="c-kind" on:change=move |e| set_kind.set(input_value(&e))>
                        <option value="adjustment">"Adjustment"</option><option value="refund">"Refund"</option><option value="promo">"Promotional credit"</option>
                    </select>
                    <label for="c-reason">"Reason (required, kept in the ledger)"</label><input id="c-reason" required on:input=move |e| set_reason.set(input_value(&e))/>
                    <div class="row"><button class="button" type="submit">"Apply"</button>
                        <button class="button secondary" type="button" on:click=move |_| set_credit_for.set(None)>"Cancel"</button></div>
                </form>
            </section>
        })}
    }
}

// ----- health and failed requests ------------------------------------------------------

#[component]
pub fn HealthPage() -> impl IntoView {
    view! { <Signed title="Provider health" path="/admin/health" admin=true render=|_| view! { <Health/> }/> }
}

#[component]
fn Health() -> impl IntoView {
    let data = Resource::new(
        || (),
        |_| api::get_as::<HealthReport>("/admin/health".into()),
    );
    view! {
        <section class="card"><h1>"Provider health"</h1><AdminNav/>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok(report) => {
                            let instances = report.instances;
                            let targets = report.targets;
                            let target_view = if targets.is_empty() {
                                view! { <Empty text="No traffic yet: every target is closed (healthy)."/> }.into_any()
                            } else {
                                view! {
                                    <div class="table-wrap"><table id="health-table">
                                        <thead><tr><th>"Target"</th><th>"Breaker"</th><th>"Requests"</th><th>"Errors"</th><th>"Error rate"</th><th>"p50"</th><th>"p95"</th><th>"p99"</th></tr></thead>
                                        <tbody>{targets.into_iter().map(|t| view! { <tr>
                                            <td>{t.target.clone()}</td>
                                            <td><span class=format!("status {}", word(&t.state))>{word(&t.state)}</span></td>
                                            <td>{t.requests}</td><td>{t.errors}</td>
                                            <td>{format!("{:.1}%", t.error_rate * 100.0)}</td>
                                            <td>{ms(t.p50_ms)}</td><td>{ms(t.p95_ms)}</td><td>{ms(t.p99_ms)}</td>
                                        </tr> }).collect_view()}</tbody>
                                    </table></div>
                                }.into_any()
                            };
                            view! {
                                <h2>"Instances"</h2>
                                <p class="muted">"Live instances on this database (a heartbeat within the last 5 seconds)."</p>
                                <div class="table-wrap"><table id="instances-table">
                                    <thead><tr><th>"Instance"</th><th>"Version"</th><th>"Listen"</th><th>"Public URL"</th><th>"Mode"</th><th>"Started"</th><th>"Last seen"</th></tr></thead>
                                    <tbody>{instances.into_iter().map(|i| view! { <tr>
                                        <td>{i.id.clone()}{i.current.then_some(" (this one)")}</td>
                                        <td>{i.version.clone()}</td><td>{i.listen.clone()}</td><td>{i.public_url.clone()}</td>
                                        <td>{instance_mode(i.cluster)}</td>
                                        <td><Time iso=i.started_at.rfc3339()/></td>
                                        <td>{format!("{} ms ago", i.last_seen_ms_ago)}</td>
                                    </tr> }).collect_view()}</tbody>
                                </table></div>
                                <h2>"Provider targets"</h2>
                                <p class="muted">"Circuit breakers are kept per instance: these are the answering instance's."</p>
                                {target_view}
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

/// How an instance shares state: through Redis (cluster) or in its own memory.
fn instance_mode(cluster: bool) -> &'static str {
    if cluster {
        "cluster (Redis)"
    } else {
        "single (in memory)"
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(|m| format!("{m:.1} ms"))
        .unwrap_or_else(|| "—".into())
}

#[component]
pub fn FailedPage() -> impl IntoView {
    view! { <Signed title="Failed requests" path="/admin/failed-requests" admin=true render=|_| view! { <Failed/> }/> }
}

#[component]
fn Failed() -> impl IntoView {
    let data = Resource::new(
        || (),
        |_| api::get_as::<AdminRequestLogPage>("/admin/request-logs?status=error&limit=100".into()),
    );
    view! {
        <section class="card"><h1>"Failed requests"</h1><AdminNav/>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok(page) => {
                            let rows = page.data;
                            if rows.is_empty() {
                                return view! { <Empty text="No failed requests."/> }.into_any();
                            }
                            view! {
                                <div class="table-wrap"><table id="failed-table">
                                    <thead><tr><th>"Time"</th><th>"User"</th><th>"Model"</th><th>"Provider"</th><th>"Status"</th><th>"Error"</th><th>"Attempts"</th></tr></thead>
                                    <tbody>{rows.into_iter().map(|r| view! { <tr>
                                        <td><Time iso=r.created_at.rfc3339()/></td><td>{r.user_id}</td><td>{r.model}</td>
                                        <td>{r.provider.unwrap_or_default()}</td><td>{r.status}</td>
                                        <td>{r.error_type.unwrap_or_default()}": "{r.error_message.unwrap_or_default()}</td><td>{r.attempts}</td>
                                    </tr> }).collect_view()}</tbody>
                                </table></div>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_lines_become_typed_targets_with_defaults() {
        let t = parse_targets("openai/gpt-4o-mini 0 3\n\n  mock/fast-1 1\nlast/one\n").unwrap();
        let got: Vec<(&str, i64, i64)> = t
            .iter()
            .map(|t| (t.model.as_str(), t.priority, t.weight))
            .collect();
        assert_eq!(
            got,
            [
                ("openai/gpt-4o-mini", 0, 3),
                ("mock/fast-1", 1, 1),
                ("last/one", 0, 1)
            ]
        );
        assert!(parse_targets("m x").is_err());
        // The body sent is the AliasRequest the server reads.
        let sent = body(&AliasRequest {
            description: String::new(),
            complexity_tier: "standard".into(),
            targets: t,
        })
        .unwrap();
        assert_eq!(
            sent["targets"][1],
            json!({"model": "mock/fast-1", "priority": 1, "weight": 1})
        );
    }

    #[test]
    fn enum_words_and_absent_provider_keys() {
        use tokengate_api::admin::{BreakerState, SecretState};
        assert_eq!(word(&BreakerState::HalfOpen), "half_open");
        assert_eq!(word(&SecretState::Set), "set");
        let toggle = body(&ProviderRequest {
            kind: ProviderKind::Mock,
            base_url: None,
            api_key: None,
            config: Some(json!({"latency_ms": 5})),
            enabled: false,
        })
        .unwrap();
        // No `api_key` at all: the stored key is kept (null would clear it).
        assert!(toggle.get("api_key").is_none(), "{toggle}");
        assert_eq!(toggle["config"], json!({"latency_ms": 5}));
    }
}
