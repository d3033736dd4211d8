//! `/me/settings`: the profile (display name, whether the email address is verified, with
//! a form to mail the verification link again), active sign-in sessions, and signing out
//! here or everywhere.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use tokengate_api::account::{Me, ProfilePatch, SessionInfo};

use crate::api;
use crate::session::PortalUser;
use crate::ui::{ErrorBox, Signed, Time};

#[component]
pub fn SettingsPage() -> impl IntoView {
    view! {
        <Signed title="Settings" path="/me/settings" render=|u| view! { <Settings user=u/> }/>
    }
}

#[component]
fn Settings(user: PortalUser) -> impl IntoView {
    let sessions = Resource::new(
        || (),
        |_| api::get_as::<Vec<SessionInfo>>("/me/sessions".into()),
    );
    let me = Resource::new(|| (), |_| api::get_as::<Me>("/me".into()));
    let query = use_query_map();
    let verification = move || {
        query.read().get("verification").map(|v| match v.as_str() {
            "sent" => "A new verification link is on its way; it works for 24 hours.",
            "already" => "Your email address is already verified.",
            "throttled" => "Too many links asked for; try again in an hour.",
            _ => "",
        })
    };
    let (name, set_name) = signal(user.display_name.clone());
    let save = Action::new(move |n: &String| {
        let n = n.clone();
        let patch = ProfilePatch {
            display_name: Some(n.clone()),
        };
        async move {
            let body = serde_json::to_value(patch).map_err(|e| e.to_string())?;
            api::call_as::<Me>("PATCH", "/me", Some(body)).await
        }
    });
    view! {
        <section class="card">
            <h1>"Settings"</h1>
            <h2>"Profile"</h2>
            <form class="row" on:submit=move |ev: leptos::ev::SubmitEvent| {
                ev.prevent_default();
                save.dispatch(name.get_untracked());
            }>
                <label for="display-name">"Name"</label>
                <input id="display-name" type="text" maxlength="100" value=name.get_untracked()
                    on:input=move |ev| set_name.set(event_target_value(&ev))/>
                <button class="button" type="submit">"Save"</button>
            </form>
            {move || save.value().get().map(|r| match r {
                Ok(_) => view! { <p class="notice" role="status">"Saved."</p> }.into_any(),
                Err(e) => view! { <ErrorBox message=e/> }.into_any(),
            })}
            <p>"Email: " <strong>{user.email.clone()}</strong> " · role: " {user.role.as_str()}</p>
            {move || verification().filter(|m| !m.is_empty()).map(|m| view! { <p class="notice" role="status" id="verification-status">{m}</p> })}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let verified = me.await.ok().is_none_or(|m| m.email_verified);
                    (!verified).then(|| view! {
                        <form method="post" action="/auth/verify-email/resend" class="row" id="email-unverified">
                            <span>"Your email address is not verified yet (the link was mailed at sign-up). It is needed to link a sign-in provider by email."</span>
                            <button class="button secondary" type="submit">"Send the link again"</button>
                        </form>
                    })
                })}
            </Suspense>
        </section>
        <section class="card">
            <h2>"Sessions"</h2>
            <Suspense fallback=|| view! { <p class="loading">"Loading sessions…"</p> }>
                {move || Suspend::new(async move {
                    match sessions.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok(list) => {
                            view! {
                                <p>{list.len()}" active portal session(s)."</p>
                                <ul>{list.into_iter().map(|s| view! {
                                    <li>"Signed in " <Time iso=s.created_at.rfc3339()/> ", expires " <Time iso=s.expires_at.rfc3339()/></li>
                                }).collect_view()}</ul>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
            <div class="row">
                <form method="post" action="/auth/logout"><button class="button secondary" type="submit">"Sign out"</button></form>
                <form method="post" action="/auth/logout-everywhere"><button class="button danger" type="submit" id="logout-everywhere">"Sign out everywhere"</button></form>
            </div>
            <p class="muted">"Signing out everywhere ends every portal session and revokes the command-line tokens of this account. API keys keep working; revoke them on the API keys page."</p>
        </section>
    }
}
