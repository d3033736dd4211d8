//! The portal's Leptos application: the HTML shell, the router and the pages. Rendered on
//! the server (feature `ssr`) and hydrated in the browser (feature `hydrate`).

pub mod auth;
pub mod session;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, StaticSegment};

use crate::auth::{ConsolePage, DevicePage, LoginPage, SignupPage};

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
            <header class="topbar">
                <a class="brand" href="/">"tokengate"</a>
                <nav>
                    <a href="/console">"Console"</a>
                    <a href="/login">"Sign in"</a>
                </nav>
            </header>
            <main>
                <Routes fallback=NotFound>
                    <Route path=StaticSegment("") view=HomePage/>
                    // In-order streaming renders each page's data in place, so these pages
                    // are complete without JavaScript.
                    <Route path=StaticSegment("login") view=LoginPage ssr=SsrMode::InOrder/>
                    <Route path=StaticSegment("signup") view=SignupPage ssr=SsrMode::InOrder/>
                    <Route path=StaticSegment("device") view=DevicePage ssr=SsrMode::InOrder/>
                    <Route path=StaticSegment("console") view=ConsolePage ssr=SsrMode::InOrder/>
                </Routes>
            </main>
        </Router>
    }
}

/// The landing page: what tokengate is and how to make a first call.
#[component]
fn HomePage() -> impl IntoView {
    let (shown, set_shown) = signal(false);
    let (language, set_language) = signal("curl");
    let snippet = move || match language.get() {
        "python" => PYTHON_SNIPPET,
        _ => CURL_SNIPPET,
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
