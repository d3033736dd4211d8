//! Sign-in, sign-up and device-approval pages. Every form is a plain HTML post to the
//! server's `/auth/*` endpoints, answered with a redirect, so the pages work with
//! JavaScript disabled; messages come from the query string the server redirects to.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::session::{find_device_request, load_sign_in_options, whoami};

fn message(error: &str) -> &'static str {
    match error {
        "invalid" => "That email and password do not match an active account.",
        "throttled" => "Too many failed attempts. Wait a few minutes and try again.",
        "unavailable" => "Sign-in is unavailable right now. Try again shortly.",
        "signup_disabled" => "Creating accounts is disabled on this server.",
        "weak_password" => "Choose a password of at least 10 characters.",
        "invalid_email" => "Enter a valid email address.",
        "taken" => "An account with this email already exists. Sign in instead.",
        "oidc" => "Signing in with that provider failed. Try again.",
        "oidc_link" => {
            "An account with this email already exists, and its address was never verified. Sign in to it with your password first, then use the provider's button to link it."
        }
        "verify_link" => "That verification link is unknown, used or expired.",
        "invalid_code" => "That code is unknown, expired or already used.",
        "too_many_devices" => {
            "Five approved devices have not finished signing in yet. Wait for them (or ten minutes) and try again."
        }
        _ => "Something went wrong. Try again.",
    }
}

/// What a device-flow scope lets the client do, for the approval page.
fn scope_text(scope: &str) -> &'static str {
    match scope {
        "account" => "read your profile, balance and usage",
        "keys" => "create, change and revoke your API keys",
        "billing" => "top up credit, read payments, statements and request logs",
        "admin" => "administer this server (providers, prices, every user and their credit)",
        "offline_access" => "stay signed in (refresh tokens, 30 days)",
        _ => "unknown",
    }
}

/// Redirects to sign-in when nobody is signed in (on the server: a 302; in the browser: a
/// full navigation).
pub fn require_sign_in(next: String) {
    let to = format!("/login?next={}", urlencode(&next));
    #[cfg(feature = "ssr")]
    leptos_axum::redirect(&to);
    #[cfg(not(feature = "ssr"))]
    if let Some(w) = web_sys::window() {
        let _ = w.location().set_href(&to);
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/login`.
#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let error = move || query.read().get("error");
    let next = move || {
        query
            .read()
            .get("next")
            .unwrap_or_else(|| "/console".into())
    };
    let signed_out = move || query.read().get("signed_out").is_some();
    let verified = move || query.read().get("verified").is_some();
    let options = Resource::new_blocking(
        || (),
        |_| async { load_sign_in_options().await.unwrap_or_default() },
    );
    view! {
        <Title text="Sign in — tokengate"/>
        <section class="card narrow">
            <h1>"Sign in"</h1>
            {move || error().map(|e| view! { <p class="alert" role="alert">{message(&e)}</p> })}
            {move || signed_out().then(|| view! { <p class="notice">"You are signed out."</p> })}
            {move || verified().then(|| view! { <p class="notice" id="email-verified">"Your email address is verified."</p> })}
            <form method="post" action="/auth/login" class="stack">
                <input type="hidden" name="next" value=next/>
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="username" required/>
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required/>
                <button class="button" type="submit">"Sign in"</button>
            </form>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let o = options.await;
                    let n = next();
                    view! {
                        <div class="stack">
                            {o.oidc.into_iter().map(|(id, name)| {
                                let href = format!("/auth/oidc/{id}/start?next={}", urlencode(&n));
                                view! { <a class="button secondary" rel="external" href=href>{format!("Sign in with {name}")}</a> }
                            }).collect_view()}
                        </div>
                        {o.signup.then(|| view! { <p>"No account yet? "<a href="/signup">"Create one"</a></p> })}
                    }
                })}
            </Suspense>
        </section>
    }
}

/// `/signup`.
#[component]
pub fn SignupPage() -> impl IntoView {
    let query = use_query_map();
    let error = move || query.read().get("error");
    view! {
        <Title text="Create an account — tokengate"/>
        <section class="card narrow">
            <h1>"Create an account"</h1>
            {move || error().map(|e| view! { <p class="alert" role="alert">{message(&e)}</p> })}
            <form method="post" action="/auth/signup" class="stack">
                <label for="display_name">"Name"</label>
                <input id="display_name" name="display_name" type="text" autocomplete="name"/>
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="username" required/>
                <label for="password">"Password (at least 10 characters)"</label>
                <input id="password" name="password" type="password" autocomplete="new-password" minlength="10" required/>
                <button class="button" type="submit">"Create account"</button>
            </form>
            <p>"Already have an account? "<a href="/login">"Sign in"</a></p>
        </section>
    }
}

/// `/device`: the verification URI of the device flow.
#[component]
pub fn DevicePage() -> impl IntoView {
    let query = use_query_map();
    let code = move || query.read().get("user_code").unwrap_or_default();
    let done = move || query.read().get("done");
    let error = move || query.read().get("error");
    let user = Resource::new_blocking(|| (), |_| async { whoami().await.ok().flatten() });
    let request = Resource::new_blocking(code, |c| async move {
        if c.is_empty() {
            None
        } else {
            find_device_request(c).await.ok().flatten()
        }
    });
    view! {
        <Title text="Approve a device — tokengate"/>
        <section class="card narrow">
            <h1>"Approve a device"</h1>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let Some(u) = user.await else {
                        let c = code();
                        let next = if c.is_empty() { "/device".to_string() } else { format!("/device?user_code={}", urlencode(&c)) };
                        require_sign_in(next);
                        return view! { <p>"Sign in to continue."</p> }.into_any();
                    };
                    if let Some(d) = done() {
                        let text = if d == "approved" {
                            "Device approved. You can close this page and return to your terminal."
                        } else {
                            "Request denied. The device was not signed in."
                        };
                        return view! { <p class="notice" id="device-result">{text}</p> }.into_any();
                    }
                    let req = request.await;
                    let is_admin = u.role == tokengate_api::kinds::Role::Admin;
                    let asks_admin = req
                        .as_ref()
                        .is_some_and(|r| r.scope.split_whitespace().any(|s| s == "admin"));
                    view! {
                        <p>"Signed in as "<strong>{u.email}</strong></p>
                        {error().map(|e| view! { <p class="alert" role="alert">{message(&e)}</p> })}
                        {req.clone().map(|r| view! {
                            <p id="device-client">"The command-line client "<code>{r.client_id}</code>
                                " asks for access to your account (" {r.scope.clone()} "). Code "<code>{r.user_code}</code>
                                ", valid " {r.expires_in / 60} " more minutes."</p>
                            <ul id="device-scopes">
                                {r.scope.split_whitespace().map(|s| view! { <li><code>{s.to_string()}</code>" — "{scope_text(s)}</li> }).collect_view()}
                            </ul>
                        })}
                        {asks_admin.then(|| if is_admin {
                            view! {
                                <p class="alert" role="alert" id="device-admin">"This request also asks for "
                                    <strong>"administrator access"</strong>
                                    ": providers, prices, users and credit of every account. It is granted only if you tick the box below."</p>
                            }.into_any()
                        } else {
                            view! {
                                <p class="alert" role="alert" id="device-admin">"This request also asks for administrator access, which you do not have; approving grants the other scopes only."</p>
                            }.into_any()
                        })}
                        <form method="post" action="/auth/device" class="stack">
                            <label for="user_code">"Code shown in your terminal"</label>
                            <input id="user_code" name="user_code" type="text" autocomplete="off"
                                placeholder="XXXX-XXXX" value=code required/>
                            {(asks_admin && is_admin).then(|| view! {
                                <label class="row" for="grant_admin">
                                    <input id="grant_admin" name="grant_admin" type="checkbox" value="yes"/>
                                    " Also grant administrator access (scope "<code>"admin"</code>")"
                                </label>
                            })}
                            <div class="row">
                                <button class="button" type="submit" name="action" value="approve">"Approve"</button>
                                <button class="button secondary" type="submit" name="action" value="deny">"Deny"</button>
                            </div>
                        </form>
                    }.into_any()
                })}
            </Suspense>
        </section>
    }
}
