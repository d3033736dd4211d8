//! The admin console (`/admin/...`, role admin; the server answers 403 to anyone else and
//! the API refuses them too): providers (write-only keys shown as set/unset, enable or
//! disable, test connection), models and prices, aliases (tiers, targets, weights) with a
//! dry run, key groups, users (search, suspend/reactivate, credit with a reason),
//! provider health and failed requests.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde_json::{Value, json};

use crate::api::{self, enc, int, text};
use crate::ui::{Empty, ErrorBox, Signed, Time};

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
        // A dry run: the verdict, then each tier's targets and why each is (not) usable.
        Ok(v) if v.get("verdict").is_some() => view! {
            <div class="notice" role="status" id="dry-run">
                <p><strong>{text(&v, "alias")}": "</strong>{text(&v, "verdict")}</p>
                <ul>{v["tiers"].as_array().cloned().unwrap_or_default().into_iter().map(|t| view! {
                    <li>"Priority " {int(&t, "priority")} {if t["serves"].as_bool().unwrap_or(false) { " (serves now)" } else { "" }} ": "
                        {t["targets"].as_array().cloned().unwrap_or_default().iter().map(|x| format!(
                            "{} — {}{}", text(x, "model"),
                            if x["usable"].as_bool().unwrap_or(false) { "usable" } else { "not usable" },
                            { let r = text(x, "reason"); if r.is_empty() { String::new() } else { format!(" ({r})") } }
                        )).collect::<Vec<_>>().join("; ")}
                    </li>
                }).collect_view()}</ul>
            </div>
        }
        .into_any(),
        // A connection test.
        Ok(v) if v.get("ok").is_some() => {
            let ok = v["ok"].as_bool().unwrap_or(false);
            let latency = v["latency_ms"].as_i64().map(|l| format!(" ({l} ms)")).unwrap_or_default();
            view! {
                <p class=if ok { "notice" } else { "alert" } role="status" id="connection-test">
                    <strong>{text(&v, "provider")}": "</strong>{text(&v, "message")}{latency}
                </p>
            }
            .into_any()
        }
        Ok(_) => view! { <p class="notice" role="status">"Saved."</p> }.into_any(),
        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
    })
}

fn list_view<F, V>(r: Result<Value, String>, empty: &'static str, f: F) -> AnyView
where
    F: Fn(Vec<Value>) -> V,
    V: IntoView + 'static,
{
    match r {
        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
        Ok(v) => {
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                view! { <Empty text=empty/> }.into_any()
            } else {
                f(list).into_any()
            }
        }
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
        |_| api::get("/admin/providers".into()),
    );
    let (act, status) = runner(set_version);
    let (name, set_name) = signal(String::new());
    let (kind, set_kind) = signal("openai".to_string());
    let (base, set_base) = signal(String::new());
    let (key, set_key) = signal(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let mut body = json!({"kind": kind.get_untracked(), "enabled": true});
        let b = base.get_untracked();
        if !b.trim().is_empty() {
            body["base_url"] = json!(b.trim());
        }
        let k = key.get_untracked();
        if !k.is_empty() {
            body["api_key"] = json!(k);
        }
        act.dispatch((
            "PUT".into(),
            format!("/admin/providers/{}", enc(name.get_untracked().trim())),
            Some(body),
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
                                let n = text(&p, "name");
                                let enabled = p["enabled"].as_bool().unwrap_or(false);
                                let toggle = json!({"kind": text(&p, "kind"), "base_url": p["base_url"].clone(), "enabled": !enabled});
                                let (n1, n2) = (n.clone(), n.clone());
                                view! { <tr>
                                    <td>{n.clone()}</td><td>{text(&p, "kind")}</td><td><code>{text(&p, "base_url")}</code></td>
                                    <td>{text(&p, "api_key")}</td><td>{if enabled { "yes" } else { "no" }}</td>
                                    <td class="actions">
                                        <button class="button secondary small" on:click=move |_| { act.dispatch(("POST".into(), format!("/admin/providers/{}/test", enc(&n1)), None)); }>"Test connection"</button>
                                        <button class="button secondary small" on:click=move |_| { act.dispatch(("PUT".into(), format!("/admin/providers/{}", enc(&n2)), Some(toggle.clone()))); }>{if enabled { "Disable" } else { "Enable" }}</button>
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
    let list = Resource::new(move || version.get(), |_| api::get("/admin/models".into()));
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
                                <td>{text(&m, "name")}</td><td>{text(&m, "provider")}</td><td>{text(&m, "upstream_model")}</td>
                                <td>{text(&m, "input_usd_per_m")}</td><td>{text(&m, "output_usd_per_m")}</td>
                                <td>{int(&m, "max_output_tokens")}</td><td>{if m["enabled"].as_bool().unwrap_or(false) { "yes" } else { "no" }}</td>
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
fn parse_targets(s: &str) -> Result<Vec<Value>, String> {
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
            Ok(json!({"model": model, "priority": num(1, 0)?, "weight": num(2, 1)?}))
        })
        .collect()
}

#[component]
fn Aliases() -> impl IntoView {
    let (version, set_version) = signal(0u32);
    let list = Resource::new(move || version.get(), |_| api::get("/admin/aliases".into()));
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
                    Some(json!({"targets": t})),
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
                                let n = text(&a, "name");
                                let lines = a["targets"].as_array().cloned().unwrap_or_default().iter()
                                    .map(|t| format!("{} {} {}", text(t, "model"), int(t, "priority"), int(t, "weight")))
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
        |_| api::get("/admin/key-groups".into()),
    );
    let (act, status) = runner(set_version);
    let (name, set_name) = signal(String::new());
    let (providers, set_providers) = signal(String::new());
    let (models, set_models) = signal(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = json!({"allowed_providers": split_list(&providers.get_untracked()),
                          "allowed_models": split_list(&models.get_untracked())});
        act.dispatch((
            "PUT".into(),
            format!("/admin/key-groups/{}", enc(name.get_untracked().trim())),
            Some(body),
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
                                <td>{text(&g, "name")}</td><td>{g["allowed_providers"].to_string()}</td><td>{g["allowed_models"].to_string()}</td>
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
        |(q, _)| api::get(format!("/admin/users?q={}", enc(&q))),
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
                                let id = int(&u, "id");
                                let active = text(&u, "status") == "active";
                                let email = text(&u, "email");
                                view! { <tr>
                                    <td>{email.clone()}</td><td>{text(&u, "display_name")}</td><td>{text(&u, "role")}</td>
                                    <td>{text(&u, "status")}</td><td>{text(&u, "balance_usd")}</td>
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
    let data = Resource::new(|| (), |_| api::get("/admin/health".into()));
    view! {
        <section class="card"><h1>"Provider health"</h1><AdminNav/>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok(v) => {
                            let targets = v["targets"].as_array().cloned().unwrap_or_default();
                            if targets.is_empty() {
                                return view! { <Empty text="No traffic yet: every target is closed (healthy)."/> }.into_any();
                            }
                            view! {
                                <div class="table-wrap"><table id="health-table">
                                    <thead><tr><th>"Target"</th><th>"Breaker"</th><th>"Requests"</th><th>"Errors"</th><th>"Error rate"</th><th>"p50"</th><th>"p95"</th><th>"p99"</th></tr></thead>
                                    <tbody>{targets.into_iter().map(|t| view! { <tr>
                                        <td>{text(&t, "target")}</td>
                                        <td><span class=format!("status {}", text(&t, "state"))>{text(&t, "state")}</span></td>
                                        <td>{int(&t, "requests")}</td><td>{int(&t, "errors")}</td>
                                        <td>{t["error_rate"].as_f64().map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_default()}</td>
                                        <td>{ms(&t["p50_ms"])}</td><td>{ms(&t["p95_ms"])}</td><td>{ms(&t["p99_ms"])}</td>
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

fn ms(v: &Value) -> String {
    v.as_f64()
        .map(|m| format!("{m:.1} ms"))
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
        |_| api::get("/admin/request-logs?status=error&limit=100".into()),
    );
    view! {
        <section class="card"><h1>"Failed requests"</h1><AdminNav/>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok(v) => {
                            let rows = v["data"].as_array().cloned().unwrap_or_default();
                            if rows.is_empty() {
                                return view! { <Empty text="No failed requests."/> }.into_any();
                            }
                            view! {
                                <div class="table-wrap"><table id="failed-table">
                                    <thead><tr><th>"Time"</th><th>"User"</th><th>"Model"</th><th>"Provider"</th><th>"Status"</th><th>"Error"</th><th>"Attempts"</th></tr></thead>
                                    <tbody>{rows.into_iter().map(|r| view! { <tr>
                                        <td><Time iso=text(&r, "created_at")/></td><td>{int(&r, "user_id")}</td><td>{text(&r, "model")}</td>
                                        <td>{text(&r, "provider")}</td><td>{int(&r, "status")}</td>
                                        <td>{text(&r, "error_type")}": "{text(&r, "error_message")}</td><td>{int(&r, "attempts")}</td>
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
