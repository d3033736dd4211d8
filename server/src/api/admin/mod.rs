//! The admin API (`/api/v1/admin`, role admin), split by area: [`catalog`] (providers,
//! models and prices, aliases and their dry run, key groups), [`users`] (search, ledger,
//! credit, suspension, ledger verification) and [`operations`] (provider health, request
//! logs of every account, provider connection tests). Every body is a
//! `tokengate_api::admin` type. The security requirement (an administrator's access token
//! or portal session) and the tag are declared once, for the whole table, by [`secured`];
//! the `AdminUser` extractor of each handler enforces it. Catalog changes apply to the
//! running gateway at once by rebuilding its routing snapshot.

mod catalog;
mod operations;
mod users;

use utoipa::openapi::security::SecurityRequirement;
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::http::{ApiError, ApiJson};

/// The admin routes; each handler's `#[utoipa::path]` names its method and path (a
/// catch-all such as `{*name}` is written `{name}` in the OpenAPI document).
pub fn route_table() -> OpenApiRouter<AppState> {
    let table = OpenApiRouter::new();
    let table = catalog::routes(table);
    let table = users::routes(table);
    secured(operations::routes(table))
}

/// The OpenAPI tag of every admin operation.
const TAG: &str = "Admin";

/// Gives every operation of `table` the admin API's security requirement (an access token
/// or a portal session, either one) and its tag.
fn secured(mut table: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    let requirement = || {
        ["access_token", "session_cookie"]
            .map(|scheme| SecurityRequirement::new(scheme, Vec::<String>::new()))
            .to_vec()
    };
    for item in table.get_openapi_mut().paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            op.security = Some(requirement());
            op.tags = Some(vec![TAG.to_string()]);
        }
    }
    table
}

/// An admin answer: a `tokengate_api::admin` body, or an error in the API's shape.
type Reply<T> = Result<ApiJson<T>, ApiError>;

/// A 404 naming what was looked for.
fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!("No {what} named {name:?}."))
}

/// Maps a core `NotFound` to a message naming the thing.
fn named(e: tokengate_core::Error, what: &str, name: &str) -> ApiError {
    match e {
        tokengate_core::Error::NotFound => not_found(what, name),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_operation_is_secured_and_tagged_once_for_the_table() {
        let doc = route_table().into_openapi();
        let mut n = 0;
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.put, &item.post, &item.delete]
                .into_iter()
                .flatten()
            {
                n += 1;
                let security = serde_json::to_value(&op.security).unwrap();
                assert_eq!(
                    security,
                    serde_json::json!([{"access_token": []}, {"session_cookie": []}]),
                    "{path}"
                );
                assert_eq!(op.tags.as_deref(), Some(&[TAG.to_string()][..]), "{path}");
            }
        }
        assert_eq!(n, 26, "every admin handler is in the table");
    }

    #[test]
    fn core_not_found_names_the_thing() {
        assert_eq!(
            named(tokengate_core::Error::NotFound, "alias", "fast"),
            ApiError::NotFound("No alias named \"fast\".".into())
        );
        assert_eq!(
            named(
                tokengate_core::Error::Conflict("used".into()),
                "alias",
                "fast"
            ),
            ApiError::Conflict("used".into())
        );
    }
}
