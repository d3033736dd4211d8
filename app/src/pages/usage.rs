//! `/me/usage`: cost, tokens and requests per day over a chosen range (server-rendered SVG
//! charts), and the same period by model and by key; totals are the account API's.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use tokengate_api::Usd;
use tokengate_api::account::{UsageDaily, UsageDay};

use crate::api;
use crate::ui::{Bar, BarChart, Empty, ErrorBox, Signed};

#[component]
pub fn UsagePage() -> impl IntoView {
    view! {
        <Signed title="Usage" path="/me/usage" render=|_| view! { <Usage/> }/>
    }
}

fn days_of(q: Option<String>) -> i64 {
    q.and_then(|d| d.parse().ok())
        .filter(|d| (1..=365).contains(d))
        .unwrap_or(30)
}

#[component]
fn Usage() -> impl IntoView {
    let query = use_query_map();
    let days = move || days_of(query.read().get("days"));
    let data = Resource::new(days, |d| {
        api::get_as::<UsageDaily>(format!("/me/usage/daily?days={d}"))
    });
    view! {
        <section class="card">
            <h1>"Usage"</h1>
            <form method="get" action="/me/usage" class="row">
                <label for="days">"Range"</label>
                <select id="days" name="days">
                    {[1, 7, 30, 90, 365].into_iter().map(|d| view! {
                        <option value=d selected=move || days() == d>{format!("Last {d} day{}", if d == 1 { "" } else { "s" })}</option>
                    }).collect_view()}
                </select>
                <button class="button secondary" type="submit">"Show"</button>
            </form>
            <Suspense fallback=|| view! { <p class="loading">"Loading usage…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok(v) => usage_view(v).into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// One row of a breakdown table: (name, requests, tokens in, tokens out, cost).
type Row = (String, i64, i64, i64, Usd);

fn usage_view(v: UsageDaily) -> impl IntoView {
    let days = v.days;
    let chart = |caption: &str, f: &dyn Fn(&UsageDay) -> (f64, String)| {
        let bars = days
            .iter()
            .map(|d| {
                let (value, shown) = f(d);
                Bar {
                    label: d.date.clone(),
                    value,
                    title: format!("{}: {shown}", d.date),
                }
            })
            .collect::<Vec<_>>();
        view! { <BarChart caption=caption.to_string() bars=bars/> }
    };
    let cost = |d: &UsageDay| (d.cost_nano as f64 / 1e9, format!("${}", d.cost_usd));
    let tokens = |d: &UsageDay| {
        let t = d.tokens_in + d.tokens_out;
        (t as f64, format!("{t} tokens"))
    };
    let requests = |d: &UsageDay| (d.requests as f64, format!("{} requests", d.requests));
    let table = |rows: Vec<Row>, label: &'static str| {
        if rows.is_empty() {
            return view! { <Empty text="No requests in this range."/> }.into_any();
        }
        view! {
            <div class="table-wrap"><table>
                <thead><tr><th>{label}</th><th>"Requests"</th><th>"Tokens in"</th><th>"Tokens out"</th><th>"Cost (USD)"</th></tr></thead>
                <tbody>{rows.into_iter().map(|(name, requests, tokens_in, tokens_out, cost)| view! {
                    <tr><td>{name}</td><td>{requests}</td><td>{tokens_in}</td>
                        <td>{tokens_out}</td><td>{cost.to_string()}</td></tr>
                }).collect_view()}</tbody>
            </table></div>
        }
        .into_any()
    };
    let by_model: Vec<Row> = v
        .by_model
        .into_iter()
        .map(|r| (r.model, r.requests, r.tokens_in, r.tokens_out, r.cost_usd))
        .collect();
    let by_key: Vec<Row> = v
        .by_key
        .into_iter()
        .map(|r| {
            let name = match (r.key_name, r.key_id) {
                (Some(n), _) if !n.is_empty() => n,
                (_, Some(id)) => format!("#{id}"),
                _ => "-".into(),
            };
            (name, r.requests, r.tokens_in, r.tokens_out, r.cost_usd)
        })
        .collect();
    view! {
        <div class="stats">
            <div class="stat"><span class="label">"Requests"</span><span class="value" id="usage-requests">{v.total_requests}</span></div>
            <div class="stat"><span class="label">"Tokens in / out"</span><span class="value">{v.total_tokens_in}" / "{v.total_tokens_out}</span></div>
            <div class="stat"><span class="label">"Cost"</span><span class="value" id="usage-cost">"$" {v.total_cost_usd.to_string()}</span></div>
        </div>
        {chart("Cost per day (USD)", &cost)}
        {chart("Tokens per day", &tokens)}
        {chart("Requests per day", &requests)}
        <h2>"By model"</h2>
        {table(by_model, "Model")}
        <h2>"By key"</h2>
        {table(by_key, "Key")}
        <p class="muted">"Successful requests only; times in UTC days."</p>
    }
}
