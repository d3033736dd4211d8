//! `/me/request-logs`: the request log with filters (date range, key, model, status),
//! pages, a detail view of one request (attempts, provider, tokens, cost, latency, error)
//! and a CSV export of the filtered set. Filters are a plain GET form: bookmarkable and
//! usable without JavaScript.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use tokengate_api::account::ApiKeyView;
use tokengate_api::billing::{RequestLog, RequestLogPage};

use crate::api::{self, enc};
use crate::ui::{Empty, ErrorBox, Signed, Time};

const FILTERS: [&str; 5] = ["from", "to", "key_id", "model", "status"];

#[component]
pub fn LogsPage() -> impl IntoView {
    view! {
        <Signed title="Request logs" path="/me/request-logs" render=|_| view! { <Logs/> }/>
    }
}

#[component]
fn Logs() -> impl IntoView {
    let query = use_query_map();
    let filter_qs = move || {
        let q = query.read();
        FILTERS
            .iter()
            .filter_map(|f| {
                q.get(f)
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("{f}={}", enc(&v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    };
    let value = move |f: &'static str| move || query.read().get(f).unwrap_or_default();
    let detail = move || query.read().get("id");
    let page = Resource::new(
        move || (filter_qs(), query.read().get("before")),
        |(qs, before)| async move {
            let before = before
                .map(|b| format!("&before={}", enc(&b)))
                .unwrap_or_default();
            api::get_as::<RequestLogPage>(format!("/me/request-logs?limit=50&{qs}{before}")).await
        },
    );
    let keys = Resource::new(|| (), |_| api::get_as::<Vec<ApiKeyView>>("/me/keys".into()));
    let one = Resource::new(detail, |id| async move {
        match id {
            Some(id) => {
                Some(api::get_as::<RequestLog>(format!("/me/request-logs/{}", enc(&id))).await)
            }
            None => None,
        }
    });
    view! {
        <section class="card">
            <h1>"Request logs"</h1>
            <form method="get" action="/me/request-logs" class="filters">
                <label>"From"<input type="date" name="from" value=value("from")/></label>
                <label>"To"<input type="date" name="to" value=value("to")/></label>
                <label>"Key"
                    <select name="key_id">
                        <option value="">"All keys"</option>
                        <Suspense fallback=|| ()>
                            {move || Suspend::new(async move {
                                let list = keys.await.unwrap_or_default();
                                let current = query.read().get("key_id").unwrap_or_default();
                                list.into_iter().map(|k| {
                                    let id = k.id.to_string();
                                    let sel = id == current;
                                    view! { <option value=id.clone() selected=sel>{k.name}</option> }
                                }).collect_view()
                            })}
                        </Suspense>
                    </select>
                </label>
                <label>"Model"<input type="text" name="model" value=value("model") placeholder="any"/></label>
                <label>"Status"
                    <select name="status">
                        {[("", "Any"), ("2xx", "Success (2xx)"), ("error", "Failed"), ("4xx", "4xx"), ("5xx", "5xx"), ("429", "429")]
                            .into_iter().map(|(v, l)| view! {
                                <option value=v selected=move || query.read().get("status").unwrap_or_default() == v>{l}</option>
                            }).collect_view()}
                    </select>
                </label>
                <button class="button secondary" type="submit">"Filter"</button>
                <a class="button secondary" id="export-csv" href=move || format!("/api/v1/me/request-logs.csv?{}", filter_qs())>"Export CSV"</a>
            </form>
        </section>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                one.await.map(|r| match r {
                    Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                    Ok(v) => detail_view(v).into_any(),
                })
            })}
        </Suspense>
        <section class="card">
            <Suspense fallback=|| view! { <p class="loading">"Loading requests…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok(page) => {
                            let rows = page.data;
                            if rows.is_empty() {
                                return view! { <Empty text="No requests match these filters."/> }.into_any();
                            }
                            let qs = filter_qs();
                            let next = page.next_before.map(|b| format!("/me/request-logs?{qs}&before={b}"));
                            view! {
                                <div class="table-wrap"><table id="logs-table">
                                    <thead><tr><th>"Time"</th><th>"Model"</th><th>"Key"</th><th>"Status"</th>
                                        <th>"Tokens in/out"</th><th>"Cost (USD)"</th><th>"Latency"</th><th></th></tr></thead>
                                    <tbody>{rows.into_iter().map(|r| {
                                        let href = format!("/me/request-logs?{qs}&id={}", enc(&r.request_id));
                                        let status = r.status;
                                        view! {
                                            <tr class=if (200..300).contains(&status) { "" } else { "failed" }>
                                                <td><Time iso=r.created_at.rfc3339()/></td>
                                                <td>{r.model}</td>
                                                <td>{r.key_name.unwrap_or_default()}</td>
                                                <td>{status}</td>
                                                <td>{r.tokens_in}" / "{r.tokens_out}</td>
                                                <td class="cost">{r.cost_usd.to_string()}</td>
                                                <td>{r.latency_ms}" ms"</td>
                                                <td><a href=href>"Details"</a></td>
                                            </tr>
                                        }
                                    }).collect_view()}</tbody>
                                </table></div>
                                <p class="row">
                                    <a class="button secondary" href=format!("/me/request-logs?{qs}")>"Newest"</a>
                                    {next.map(|n| view! { <a class="button secondary" id="next-page" href=n>"Older"</a> })}
                                </p>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

fn detail_view(r: RequestLog) -> impl IntoView {
    let attempts = r.attempts_detail.unwrap_or_default();
    let error = r.error_message.unwrap_or_default();
    let error_type = r.error_type.map(|k| k.as_str()).unwrap_or_default();
    let ttfb = r.ttfb_ms.map(|t| t.to_string()).unwrap_or_default();
    view! {
        <section class="card" id="log-detail">
            <h2>"Request " <code>{r.request_id}</code></h2>
            <dl class="facts">
                <dt>"Time"</dt><dd><Time iso=r.created_at.rfc3339()/></dd>
                <dt>"Endpoint"</dt><dd><code>{r.endpoint}</code></dd>
                <dt>"Model asked"</dt><dd>{r.model}</dd>
                <dt>"Served by"</dt><dd>{r.served_model.unwrap_or_default()}" via "{r.provider.unwrap_or_default()}</dd>
                <dt>"Status"</dt><dd>{r.status}</dd>
                <dt>"Tokens"</dt><dd>{r.tokens_in}" in, "{r.tokens_out}" out ("{r.cached_tokens}" cached)"</dd>
                <dt>"Cost"</dt><dd>"$" {r.cost_usd.to_string()}</dd>
                <dt>"Latency"</dt><dd>{r.latency_ms}" ms (first byte "{ttfb}" ms)"</dd>
                <dt>"Attempts"</dt><dd>{r.attempts}</dd>
            </dl>
            {(!error.is_empty()).then(|| view! { <ErrorBox message=format!("{error_type}: {error}")/> })}
            {(!attempts.is_empty()).then(|| view! {
                <h3>"Attempts"</h3>
                <pre><code>{serde_json::to_string_pretty(&attempts).unwrap_or_default()}</code></pre>
            })}
        </section>
    }
}
