//! Shared portal building blocks: the signed-in page frame (sign-in redirect, admin-only
//! 403), times in the browser's zone with UTC in the tooltip, messages for loading, empty
//! and error states, a copy button, a confirmation dialog and server-rendered SVG bar
//! charts (no script or CDN needed to see them).

use leptos::prelude::*;
use leptos_meta::Title;

use crate::auth::require_sign_in;
use crate::session::{PortalUser, whoami};

/// The frame of every signed-in page: loads the user, sends visitors to sign-in, and
/// answers 403 on admin pages for everyone but administrators. `render` gets the user.
#[component]
pub fn Signed<F, V>(
    title: &'static str,
    path: &'static str,
    #[prop(optional)] admin: bool,
    render: F,
) -> impl IntoView
where
    F: Fn(PortalUser) -> V + Send + Sync + Clone + 'static,
    V: IntoView + 'static,
{
    let user = Resource::new_blocking(|| (), |_| async { whoami().await.ok().flatten() });
    view! {
        <Title text=format!("{title} — tokengate")/>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {
                let render = render.clone();
                move || {
                    let render = render.clone();
                    Suspend::new(async move {
                        let Some(u) = user.await else {
                            require_sign_in(path.to_string());
                            return view! { <p>"Sign in to continue."</p> }.into_any();
                        };
                        if admin && u.role != tokengate_api::kinds::Role::Admin {
                            forbidden();
                            return view! {
                                <section class="card">
                                    <h1>"Administrators only"</h1>
                                    <p class="alert" role="alert">"This page is for administrators of this tokengate server."</p>
                                    <p><a href="/console">"Back to your dashboard"</a></p>
                                </section>
                            }
                            .into_any();
                        }
                        render(u).into_any()
                    })
                }
            }
        </Suspense>
    }
}

/// Sets the SSR response status to 403.
fn forbidden() {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::FORBIDDEN);
    }
}

/// `2026-11-23T10:00:00Z` → `2026-11-23 10:00 UTC`.
pub fn utc_text(iso: &str) -> String {
    if iso.len() < 16 {
        return iso.to_string();
    }
    format!("{} {} UTC", &iso[..10], &iso[11..16])
}

/// A time: UTC on the server and without JavaScript, the browser's local time once
/// hydrated; the UTC time is always in the tooltip.
#[component]
pub fn Time(iso: String) -> impl IntoView {
    if iso.is_empty() {
        return view! { <span class="muted">"—"</span> }.into_any();
    }
    let utc = utc_text(&iso);
    let (shown, set_shown) = signal(utc.clone());
    #[cfg(feature = "hydrate")]
    {
        let iso = iso.clone();
        Effect::new(move |_| {
            let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(&iso));
            if !d.get_time().is_nan() {
                let s: String = d
                    .to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED)
                    .into();
                set_shown.set(s);
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = set_shown;
    view! { <time datetime=iso.clone() title=format!("{utc} ({iso})")>{move || shown.get()}</time> }
        .into_any()
}

/// An error message box.
#[component]
pub fn ErrorBox(message: String) -> impl IntoView {
    view! { <p class="alert" role="alert">{message}</p> }
}

/// The empty state of a list.
#[component]
pub fn Empty(text: &'static str) -> impl IntoView {
    view! { <p class="empty">{text}</p> }
}

/// A button that copies `text` to the clipboard (once the page is hydrated).
#[component]
pub fn CopyButton(text: String, #[prop(optional)] id: &'static str) -> impl IntoView {
    let (label, set_label) = signal("Copy");
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&text);
            set_label.set("Copied");
        }
        #[cfg(not(feature = "hydrate"))]
        {
            let _ = &text;
            set_label.set("Copied");
        }
    };
    view! { <button type="button" class="button secondary small" id=id on:click=copy>{move || label.get()}</button> }
}

/// A modal dialog: focus moves into it when it opens (to its `autofocus` element, else its
/// first control), Tab stays inside it, Escape closes it, and focus returns to the
/// element that opened it.
#[component]
pub fn Dialog(
    title: String,
    #[prop(into)] on_close: Callback<()>,
    children: Children,
) -> impl IntoView {
    let node = NodeRef::<leptos::html::Div>::new();
    #[cfg(not(feature = "hydrate"))]
    let _ = on_close;
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let opener = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.active_element())
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
        let controls = move || -> Vec<web_sys::HtmlElement> {
            let Some(el) = node.get_untracked() else {
                return Vec::new();
            };
            let Ok(list) = el.query_selector_all("button, a[href], input, select, textarea") else {
                return Vec::new();
            };
            (0..list.length())
                .filter_map(|i| list.item(i))
                .filter_map(|n| n.dyn_into::<web_sys::HtmlElement>().ok())
                .collect()
        };
        Effect::new(move |_| {
            if let Some(el) = node.get() {
                let target = el
                    .query_selector("[autofocus]")
                    .ok()
                    .flatten()
                    .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
                    .or_else(|| controls().into_iter().next());
                if let Some(t) = target {
                    let _ = t.focus();
                }
            }
        });
        let handle = window_event_listener(leptos::ev::keydown, move |ev| {
            if ev.key() == "Escape" {
                on_close.run(());
            } else if ev.key() == "Tab" {
                let all = controls();
                let (Some(first), Some(last)) = (all.first(), all.last()) else {
                    return;
                };
                let active = web_sys::window()
                    .and_then(|w| w.document())
                    .and_then(|d| d.active_element());
                let at = |e: &web_sys::HtmlElement| {
                    active
                        .as_ref()
                        .is_some_and(|a| a == e.unchecked_ref::<web_sys::Element>())
                };
                let inside = all.iter().any(at);
                if ev.shift_key() && (at(first) || !inside) {
                    ev.prevent_default();
                    let _ = last.focus();
                } else if !ev.shift_key() && (at(last) || !inside) {
                    ev.prevent_default();
                    let _ = first.focus();
                }
            }
        });
        on_cleanup(move || {
            handle.remove();
            if let Some(o) = opener {
                let _ = o.focus();
            }
        });
    }
    view! {
        <div class="backdrop">
            <div class="dialog card" role="dialog" aria-modal="true" aria-label=title.clone() node_ref=node>
                <h2>{title.clone()}</h2>
                {children()}
            </div>
        </div>
    }
}

/// One bar of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// The tooltip.
    pub title: String,
}

/// A bar chart as inline SVG: readable with or without JavaScript.
#[component]
pub fn BarChart(caption: String, bars: Vec<Bar>) -> impl IntoView {
    let (w, h, pad) = (720.0_f64, 180.0_f64, 24.0_f64);
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let n = bars.len().max(1) as f64;
    let slot = (w - pad) / n;
    let bar_w = (slot * 0.75).max(1.0);
    let rects = bars
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let bh = if max > 0.0 {
                (b.value / max) * (h - pad * 1.5)
            } else {
                0.0
            };
            let x = pad + i as f64 * slot;
            let y = h - pad - bh;
            view! {
                <rect x=format!("{x:.1}") y=format!("{y:.1}") width=format!("{bar_w:.1}")
                    height=format!("{bh:.1}") class="bar"><title>{b.title.clone()}</title></rect>
            }
        })
        .collect_view();
    let first = bars.first().map(|b| b.label.clone()).unwrap_or_default();
    let last = bars.last().map(|b| b.label.clone()).unwrap_or_default();
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {w} {h}") role="img" aria-label=caption.clone() preserveAspectRatio="none">
                <line x1=pad y1=h - pad x2=w y2=h - pad class="axis"/>
                {rects}
                <text x=pad y=h - 6.0 class="tick">{first}</text>
                <text x=w - 4.0 y=h - 6.0 class="tick" text-anchor="end">{last}</text>
            </svg>
            <figcaption>{caption}</figcaption>
        </figure>
    }
}
