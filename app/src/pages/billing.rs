//! `/me/billing` and `/me/billing/statement`: balance, the top-up form (a plain post that
//! redirects to the payment provider's checkout — it works without JavaScript), the
//! landing states after checkout, payment history with receipt PDFs, and monthly
//! statements with CSV and PDF downloads.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use tokengate_api::account::Balance;
use tokengate_api::billing::{PaymentView, StatementView};

use crate::api::{self, enc};
use crate::ui::{Empty, ErrorBox, Signed, Time};

#[component]
pub fn BillingPage() -> impl IntoView {
    view! {
        <Signed title="Billing" path="/me/billing" render=|_| view! { <Billing/> }/>
    }
}

#[component]
fn Billing() -> impl IntoView {
    let query = use_query_map();
    let data = Resource::new(
        || (),
        |_| async {
            let balance = api::get_as::<Balance>("/balance".into()).await?;
            let payments = api::get_as::<Vec<PaymentView>>("/me/billing/payments".into()).await?;
            Ok::<_, String>((balance, payments))
        },
    );
    view! {
        <section class="card">
            <h1>"Billing"</h1>
            {move || match query.read().get("checkout").as_deref() {
                Some("success") => Some(view! {
                    <p class="notice" id="checkout-success">"Thank you! Your payment is being confirmed; the credit appears here as soon as the payment provider confirms it."</p>
                }.into_any()),
                Some("cancel") => Some(view! {
                    <p class="notice" id="checkout-cancel">"Checkout cancelled. Nothing was charged."</p>
                }.into_any()),
                _ => None,
            }}
            {move || query.read().get("error").map(|e| view! { <ErrorBox message=e/> })}
            <Suspense fallback=|| view! { <p class="loading">"Loading billing…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok((balance, payments)) => view! {
                            <p class="big">"Balance: " <strong id="billing-balance">"$" {balance.balance_usd.to_string()}</strong></p>
                            <form method="post" action="/me/billing/topup" class="row" id="topup-form">
                                <label for="amount">"Add credit (USD)"</label>
                                <input id="amount" name="amount_usd" type="number" min="1" step="0.01" value="10" required/>
                                <button class="button" type="submit">"Top up"</button>
                            </form>
                            <p class="muted">"You will be sent to a secure checkout page to pay; credit is added once the payment is confirmed."</p>
                            <h2>"Payments"</h2>
                            {payments_table(payments)}
                        }.into_any(),
                    }
                })}
            </Suspense>
            <p><a class="button secondary" href="/me/billing/statement">"Monthly statements"</a></p>
        </section>
    }
}

fn payments_table(list: Vec<PaymentView>) -> AnyView {
    if list.is_empty() {
        return view! { <Empty text="No payments yet."/> }.into_any();
    }
    view! {
        <div class="table-wrap"><table id="payments-table">
            <thead><tr><th>"Date"</th><th>"Amount (USD)"</th><th>"Status"</th><th>"Receipt"</th></tr></thead>
            <tbody>{list.into_iter().map(|p| {
                let status = p.status.as_str();
                view! {
                    <tr>
                        <td><Time iso=p.created_at.rfc3339()/></td>
                        <td>{p.amount_usd.to_string()}</td>
                        <td><span class=format!("status {status}")>{status}</span></td>
                        <td>{match (p.receipt_url, p.checkout_url) {
                            (Some(receipt), _) => view! { <a href=receipt>"Receipt (PDF)"</a> }.into_any(),
                            (None, Some(checkout)) => view! { <a href=checkout rel="external">"Continue to payment"</a> }.into_any(),
                            (None, None) => view! { <span class="muted">"—"</span> }.into_any(),
                        }}</td>
                    </tr>
                }
            }).collect_view()}</tbody>
        </table></div>
    }
    .into_any()
}

#[component]
pub fn StatementPage() -> impl IntoView {
    view! {
        <Signed title="Statements" path="/me/billing/statement" render=|_| view! { <Statement/> }/>
    }
}

#[component]
fn Statement() -> impl IntoView {
    let query = use_query_map();
    let month = move || query.read().get("month").filter(|m| !m.is_empty());
    let data = Resource::new(month, |m| async move {
        let q = m.map(|m| format!("?month={}", enc(&m))).unwrap_or_default();
        api::get_as::<StatementView>(format!("/me/billing/statement{q}")).await
    });
    view! {
        <section class="card">
            <h1>"Monthly statement"</h1>
            <form method="get" action="/me/billing/statement" class="row">
                <label for="month">"Month"</label>
                <input id="month" name="month" type="month" value=move || month().unwrap_or_default()/>
                <button class="button secondary" type="submit">"Show"</button>
            </form>
            <Suspense fallback=|| view! { <p class="loading">"Loading statement…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok(s) => statement_view(s).into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

fn statement_view(s: StatementView) -> impl IntoView {
    let m = enc(&s.month);
    let requests = match s.usage_requests {
        1 => " (1 request)".to_string(),
        n => format!(" ({n} requests)"),
    };
    view! {
        <p class="row">
            <a class="button secondary" id="statement-csv" href=format!("/api/v1/me/billing/statement.csv?month={m}")>"Download CSV"</a>
            <a class="button secondary" id="statement-pdf" href=format!("/api/v1/me/billing/statement.pdf?month={m}")>"Download PDF"</a>
        </p>
        <dl class="facts" id="statement-summary">
            <dt>"Month"</dt><dd>{s.month.clone()}" (UTC)"</dd>
            <dt>"Opening balance"</dt><dd>"$" {s.opening_balance_usd.to_string()}</dd>
            <dt>"Top-ups"</dt><dd>"$" {s.topups_usd.to_string()}</dd>
            <dt>"Adjustments and refunds"</dt><dd>"$" {s.adjustments_usd.to_string()}</dd>
            <dt>"Usage"</dt><dd id="statement-usage">"$" {s.usage_usd.to_string()}{requests}</dd>
            <dt>"Closing balance"</dt><dd>"$" {s.closing_balance_usd.to_string()}</dd>
        </dl>
        <h2>"Credits and adjustments"</h2>
        {if s.credits.is_empty() { view! { <Empty text="None this month."/> }.into_any() } else { view! {
            <div class="table-wrap"><table>
                <thead><tr><th>"Date"</th><th>"Kind"</th><th>"Note"</th><th>"Amount (USD)"</th></tr></thead>
                <tbody>{s.credits.into_iter().map(|c| view! {
                    <tr><td><Time iso=c.created_at.rfc3339()/></td><td>{c.kind.as_str()}</td>
                        <td>{c.note.unwrap_or_default()}</td><td>{c.amount_usd.to_string()}</td></tr>
                }).collect_view()}</tbody>
            </table></div>
        }.into_any() }}
        <h2>"Usage by model"</h2>
        {if s.usage_by_model.is_empty() { view! { <Empty text="No usage this month."/> }.into_any() } else { view! {
            <div class="table-wrap"><table id="statement-usage-table">
                <thead><tr><th>"Model"</th><th>"Requests"</th><th>"Tokens in"</th><th>"Tokens out"</th><th>"Cost (USD)"</th></tr></thead>
                <tbody>{s.usage_by_model.into_iter().map(|u| view! {
                    <tr><td>{u.model}</td><td>{u.requests}</td><td>{u.tokens_in}</td>
                        <td>{u.tokens_out}</td><td>{u.cost_usd.to_string()}</td></tr>
                }).collect_view()}</tbody>
            </table></div>
        }.into_any() }}
    }
}
