//! `/me/usage`: cost, tokens and requests per day over a chosen range (server-rendered SVG
//! charts), and the same period by model and by key; totals are the account API's.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use serde_json::Value;

use crate::api::{self, int, text};
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
    let data = Resource::new(days, |d| api::get(format!("/me/usage/daily?days={d}")));
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

fn usage_view(v: Value) -> impl IntoView {
    let days = v["days"].as_array().cloned().unwrap_or_default();
    let chart = |caption: &str, f: &dyn Fn(&Value) -> (f64, String)| {
        let bars = days
            .iter()
            .map(|d| {
                let (value, shown) = f(d);
                Bar {
                    label: text(d, "date"),
                    value,
                    title: format!("{}: {shown}", text(d, "date")),
                }
            })
            .collect::<Vec<_>>();
        view! { <BarChart caption=caption.to_string() bars=bars/> }
    };
    let cost = |d: &Value| {
        (
            int(d, "cost_nano") as f64 / 1e9,
            format!("${}", text(d, "cost_usd")),
        )
    };
    let tokens = |d: &Value| {
        let t = int(d, "tokens_in") + int(d, "tokens_out");
        (t as f64, format!("{t} tokens"))
    };
    let requests = |d: &Value| {
        let n = int(d, "requests");
        (n as f64, format!("{n} requests"))
    };
    let table = |rows: Vec<Value>, label: &'static str, name: fn(&Value) -> String| {
        if rows.is_empty() {
            return view! { <Empty text="No requests in this range."/> }.into_any();
        }
        view! {
            <div class="table-wrap"><table>
                <thead><tr><th>{label}</th><th>"Requests"</th><th>"Tokens in"</th><th>"Tokens out"</th><th>"Cost (USD)"</th></tr></thead>
                <tbody>{rows.into_iter().map(|r| view! {
                    <tr><td>{name(&r)}</td><td>{int(&r, "requests")}</td><td>{int(&r, "tokens_in")}</td>
                        <td>{int(&r, "tokens_out")}</td><td>{text(&r, "cost_usd")}</td></tr>
                }).collect_view()}</tbody>
            </table></div>
        }
        .into_any()
    };
    let by_model = v["by_model"].as_array().cloned().unwrap_or_default();
    let by_key = v["by_key"].as_array().cloned().unwrap_or_default();
    view! {
        <div class="stats">
            <div class="stat"><span class="label">"Requests"</span><span class="value" id="usage-requests">{int(&v, "total_requests")}</span></div>
            <div class="stat"><span class="label">"Tokens in / out"</span><span class="value">{int(&v, "total_tokens_in")}" / "{int(&v, "total_tokens_out")}</span></div>
            <div class="stat"><span class="label">"Cost"</span><span class="value" id="usage-cost">"$" {text(&v, "total_cost_usd")}</span></div>
        </div>
        {chart("Cost per day (USD)", &cost)}
        {chart("Tokens per day", &tokens)}
        {chart("Requests per day", &requests)}
        <h2>"By model"</h2>
        {table(by_model, "Model", |r| text(r, "model"))}
        <h2>"By key"</h2>
        {table(by_key, "Key", |r| {
            let n = text(r, "key_name");
            if n.is_empty() { format!("#{}", int(r, "key_id")) } else { n }
        })}
        <p class="muted">"Successful requests only; times in UTC days."</p>
    }
}
