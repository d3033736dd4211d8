//! `/console`: the signed-in dashboard — balance, spend this month, requests and tokens
//! today, a low-balance prompt to top up, and a quickstart with the base URL and
//! copyable curl / Python / JavaScript snippets.

use leptos::prelude::*;
use tokengate_api::account::{Balance, UsageDaily};
use tokengate_api::billing::StatementView;
use tokengate_api::money::NANOS_PER_USD;

use crate::api;
use crate::session::{PortalUser, load_sign_in_options};
use crate::ui::{CopyButton, ErrorBox, Signed};

/// Below this balance (nano-USD: $1) the dashboard suggests a top-up.
const LOW_BALANCE: i64 = NANOS_PER_USD;

#[component]
pub fn ConsolePage() -> impl IntoView {
    view! {
        <Signed title="Dashboard" path="/console" render=|u| view! { <Dashboard user=u/> }/>
    }
}

#[component]
fn Dashboard(user: PortalUser) -> impl IntoView {
    let data = Resource::new(
        || (),
        |_| async {
            let month = api::get_as::<StatementView>("/me/billing/statement".into()).await?;
            let today = api::get_as::<UsageDaily>("/me/usage/daily?days=1".into()).await?;
            let balance = api::get_as::<Balance>("/balance".into()).await?;
            Ok::<_, String>((month, today, balance))
        },
    );
    let options = Resource::new(
        || (),
        |_| async { load_sign_in_options().await.unwrap_or_default() },
    );
    let (lang, set_lang) = signal("curl");
    view! {
        <section class="card">
            <h1>"Welcome, " {user.display_name.clone()}</h1>
            <p class="muted">"Signed in as " <strong id="console-email">{user.email.clone()}</strong></p>
            <Suspense fallback=|| view! { <p class="loading">"Loading your account…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok((month, today, balance)) => {
                            let low = balance.balance_usd.nanos() < LOW_BALANCE;
                            let bal = balance.balance_usd.to_string();
                            let (requests, tokens) = today.days.last().map(|d| (d.requests, d.tokens_in + d.tokens_out)).unwrap_or_default();
                            view! {
                                <div class="stats">
                                    <div class="stat"><span class="label">"Balance"</span><span class="value" id="stat-balance">"$" {bal}</span></div>
                                    <div class="stat"><span class="label">"Spend this month"</span><span class="value" id="stat-month">"$" {month.usage_usd.to_string()}</span></div>
                                    <div class="stat"><span class="label">"Requests today"</span><span class="value" id="stat-requests">{requests}</span></div>
                                    <div class="stat"><span class="label">"Tokens today"</span><span class="value">{tokens}</span></div>
                                </div>
                                {low.then(|| view! {
                                    <p class="notice" id="low-balance">"Your balance is low. "<a href="/me/billing">"Top up"</a>" to keep your keys working."</p>
                                })}
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
        <section class="card">
            <h2>"Quickstart"</h2>
            <ol>
                <li><a href="/me/keys?create=1">"Create an API key"</a>" (the secret is shown once)."</li>
                <li>"Set it and the base URL in your environment."</li>
                <li>"Call any model with the SDK you already use."</li>
            </ol>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let base = format!("{}/v1", options.await.public_url);
                    let env = format!("export OPENAI_API_KEY=sk-tg-...\nexport OPENAI_BASE_URL={base}");
                    let shown = base.clone();
                    let code = move || snippet(lang.get(), &base);
                    view! {
                        <p>"Base URL: "<code id="base-url">{shown}</code></p>
                        <div class="row secret"><pre><code>{env.clone()}</code></pre><CopyButton text=env.clone()/></div>
                        <div class="tabs" role="tablist">
                            {["curl", "python", "javascript"].into_iter().map(|l| view! {
                                <button role="tab" aria-selected=move || (lang.get() == l).to_string()
                                    on:click=move |_| set_lang.set(l)>{l}</button>
                            }).collect_view()}
                        </div>
                        <div class="row secret"><pre><code id="snippet">{code.clone()}</code></pre>{move || view! { <CopyButton text=code()/> }}</div>
                    }
                })}
            </Suspense>
        </section>
    }
}

fn snippet(lang: &str, base: &str) -> String {
    match lang {
        "python" => format!(
            "from openai import OpenAI\n\nclient = OpenAI(base_url=\"{base}\")  # reads OPENAI_API_KEY\nreply = client.chat.completions.create(\n    model=\"tokengate-fast\",\n    messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}],\n)\nprint(reply.choices[0].message.content)"
        ),
        "javascript" => format!(
            "import OpenAI from \"openai\";\n\nconst client = new OpenAI({{ baseURL: \"{base}\" }}); // reads OPENAI_API_KEY\nconst reply = await client.chat.completions.create({{\n  model: \"tokengate-fast\",\n  messages: [{{ role: \"user\", content: \"Hello\" }}],\n}});\nconsole.log(reply.choices[0].message.content);"
        ),
        _ => format!(
            "curl {base}/chat/completions \\\n  -H \"Authorization: Bearer $OPENAI_API_KEY\" \\\n  -H \"Content-Type: application/json\" \\\n  -d '{{\"model\":\"tokengate-fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"
        ),
    }
}
