//! `/me/settings`: the profile (display name), active sign-in sessions, and signing out
//! here or everywhere.

use leptos::prelude::*;
use serde_json::json;

use crate::api::{self, text};
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
    let sessions = Resource::new(|| (), |_| api::get("/me/sessions".into()));
    let (name, set_name) = signal(user.display_name.clone());
    let save = Action::new(move |n: &String| {
        let n = n.clone();
        async move { api::call("PATCH", "/me", Some(json!({"display_name": n}))).await }
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
            <p>"Email: " <strong>{user.email.clone()}</strong> " · role: " {user.role.clone()}</p>
        </section>
        <section class="card">
            <h2>"Sessions"</h2>
            <Suspense fallback=|| view! { <p class="loading">"Loading sessions…"</p> }>
                {move || Suspend::new(async move {
                    match sessions.await {
                        Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        Ok(v) => {
                            let list = v.as_array().cloned().unwrap_or_default();
                            view! {
                                <p>{list.len()}" active portal session(s)."</p>
                                <ul>{list.into_iter().map(|s| view! {
                                    <li>"Signed in " <Time iso=text(&s, "created_at")/> ", expires " <Time iso=text(&s, "expires_at")/></li>
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
