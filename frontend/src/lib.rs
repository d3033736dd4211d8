//! The wasm entry point: hydrates the server-rendered portal in the browser. Nothing else lives here.

/// Called by the hydration script cargo-leptos injects into every SSR page.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
