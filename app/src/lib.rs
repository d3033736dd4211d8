//! The portal's Leptos application: the HTML shell, the router and the pages. Rendered on
//! the server (feature `ssr`) and hydrated in the browser (feature `hydrate`).

pub mod api;
pub mod auth;
pub mod pages;
pub mod session;
pub mod ui;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, StaticSegment};

use crate::auth::{DevicePage, LoginPage, SignupPage};
use crate::pages::{admin, billing, console, keys, logs, settings, usage};
use crate::session::whoami;

/// The HTML document around the app, rendered on the server for every page.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The root component: stylesheet, title and routes.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/tokengate.css"/>
        <Title text="tokengate"/>
        <Router>
            <TopBar/>
            <main>
                // In-order streaming renders each page's data in place, so every page is
                // complete without JavaScript.
                <Routes fallback=NotFound>
                    <Route path=StaticSegment("") view=HomePage/>
                    <Route path=StaticSegment("login") view=LoginPage ssr=SsrMode::InOrder/>
                    <Route path=StaticSegment("signup") view=SignupPage ssr=SsrMode::InOrder/>
                    <Route path=StaticSegment("device") view=DevicePage ssr=SsrMode::InOrder/>
                    <Route path=StaticSegment("console") view=console::ConsolePage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("me"), StaticSegment("keys")) view=keys::KeysPage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("me"), StaticSegment("usage")) view=usage::UsagePage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("me"), StaticSegment("request-logs")) view=logs::LogsPage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("me"), StaticSegment("billing")) view=billing::BillingPage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("me"), StaticSegment("billing"), StaticSegment("statement")) view=billing::StatementPage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("me"), StaticSegment("settings")) view=settings::SettingsPage ssr=SsrMode::InOrder/>
                    <Route path=StaticSegment("admin") view=admin::AdminHome ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("admin"), StaticSegment("providers")) view=admin::ProvidersPage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("admin"), StaticSegment("models")) view=admin::ModelsPage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("admin"), StaticSegment("aliases")) view=admin::AliasesPage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("admin"), StaticSegment("key-groups")) view=admin::GroupsPage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("admin"), StaticSegment("users")) view=admin::UsersPage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("admin"), StaticSegment("health")) view=admin::HealthPage ssr=SsrMode::InOrder/>
                    <Route path=(StaticSegment("admin"), StaticSegment("failed-requests")) view=admin::FailedPage ssr=SsrMode::InOrder/>
                </Routes>
            </main>
        </Router>
    }
}

/// The top bar: the portal's sections for a signed-in user (admin links for admins), or
/// sign-in links.
#[component]
fn TopBar() -> impl IntoView {
    let user = Resource::new_blocking(|| (), |_| async { whoami().await.ok().flatten() });
    view! {
        <header class="topbar">
            <a class="brand" href="/">"tokengate"</a>
            <nav aria-label="Main">
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        match user.await {
                            Some(u) => view! {
                                <a href="/console">"Dashboard"</a>
                                <a href="/me/keys">"API keys"</a>
                                <a href="/me/usage">"Usage"</a>
                                <a href="/me/request-logs">"Logs"</a>
                                <a href="/me/billing">"Billing"</a>
                                <a href="/docs">"Docs"</a>
                                {(u.role == tokengate_api::kinds::Role::Admin).then(|| view! { <a href="/admin">"Admin"</a> })}
                                <a href="/me/settings" title=u.email.clone()>"Settings"</a>
                            }.into_any(),
                            None => view! {
                                <a href="/docs">"Docs"</a>
                                <a href="/login">"Sign in"</a>
                            }.into_any(),
                        }
                    })}
                </Suspense>
            </nav>
        </header>
    }
}

/// The landing page: what tokengate is and how to make a first call.
#[component]
fn HomePage() -> impl IntoView {
    let (shown, set_shown) = signal(false);
    let (language, set_language) = signal("curl");
    let options = Resource::new(
        || (),
        |_| async { session::load_sign_in_options().await.unwrap_or_default() },
    );
    let snippet = move || {
        let base = options
            .get()
            .map(|o| o.public_url)
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "http://127.0.0.1:3000".into());
        match language.get() {
            "python" => PYTHON_SNIPPET,
            _ => CURL_SNIPPET,
        }
        .replace("http://127.0.0.1:3000", &base)
    };
    view! {
        <Title text="tokengate — one endpoint for every model"/>
        <section class="hero">
            <h1>"One endpoint for every model."</h1>
            <p class="lead">
                "Point any OpenAI or Anthropic SDK at "<code>"/v1"</code>
                ". tokengate routes each request to the right provider, meters every token and bills it exactly."
            </p>
            <button
                id="quickstart-toggle"
                class="button"
                aria-expanded=move || shown.get().to_string()
                on:click=move |_| set_shown.update(|s| *s = !*s)
            >
                {move || if shown.get() { "Hide quickstart" } else { "Show quickstart" }}
            </button>
        </section>
        <Show when=move || shown.get()>
            <section id="quickstart" class="card">
                <div class="tabs" role="tablist">
                    <button role="tab" aria-selected=move || (language.get() == "curl").to_string()
                        on:click=move |_| set_language.set("curl")>"curl"</button>
                    <button role="tab" aria-selected=move || (language.get() == "python").to_string()
                        on:click=move |_| set_language.set("python")>"Python"</button>
                </div>
                <pre><code>{snippet}</code></pre>
            </section>
        </Show>
    }
}

const CURL_SNIPPET: &str = r#"curl http://127.0.0.1:3000/v1/chat/completions \
  -H "Authorization: Bearer $TOKENGATE_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model":"tokengate-fast","messages":[{"role":"user","content":"Hello"}]}'"#;

const PYTHON_SNIPPET: &str = r#"import os
from openai import OpenAI

client = OpenAI(api_key=os.environ["TOKENGATE_API_KEY"], base_url="http://127.0.0.1:3000/v1")
reply = client.chat.completions.create(
    model="tokengate-fast",
    messages=[{"role": "user", "content": "Hello"}],
)
print(reply.choices[0].message.content)"#;

/// Shown for any unknown portal path.
#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
            resp.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <Title text="Not found — tokengate"/>
        <section class="card">
            <h1>"Page not found"</h1>
            <p><a href="/">"Back to the start page"</a></p>
        </section>
    }
}
