//! The OpenAPI 3.1 document and the docs page.
//!
//! The document is generated from the code at startup: aide walks the routes and their
//! extractors and responses, schemars derives every schema from the types in
//! [`crate::model`] (doc comments become descriptions, bound attributes become `minimum`,
//! `maxLength`, `pattern`). Nothing is written by hand. Two bounds are gateway settings
//! rather than constants (the longest synchronous load test, the most servers a scale may
//! ask for), so the document is patched with the values in force before it is served.
//!
//! `/docs` is Swagger UI, whose JavaScript and CSS aide compiles into the binary: the page
//! loads nothing from the network, so it works on a machine with no internet.

use aide::openapi::{OpenApi, ParameterSchemaOrContent, SchemaObject};
use aide::transform::TransformOpenApi;
use serde_json::Value;

use crate::config::Config;

/// Title, version and the conventions, on the document itself.
pub fn describe(api: TransformOpenApi<'_>) -> TransformOpenApi<'_> {
    api.title("farm gateway")
        .version(env!("CARGO_PKG_VERSION"))
        .summary("REST for the farm's controller")
        .description(
            "Every route translates one call of the controller's gRPC `farm.v1.FarmService`; \
             the gateway keeps no farm state (the server list's last JSON is sent again \
             only when the controller confirms the farm has not changed). `GET /api/servers` \
             answers with an `ETag`; send it back in `If-None-Match` for a 304 while the farm \
             is unchanged (it changes with every server's sample, about once a second per \
             server). JSON is snake_case, server ids are numbers, \
             statuses and kinds are lowercase strings. Every 4xx and 5xx has the body \
             `{\"error\": {\"status\", \"code\", \"message\"}}`; a 503 means the controller \
             is down or restarting. Request bodies are at most 256 KiB and reject unknown \
             fields. grpc-web for `farm.v1.FarmService` is served on the same port.",
        )
        // Any route can answer an error (405, 413, 503...): every one documents the shape.
        .default_response::<crate::ApiError>()
}

/// The schema of an entity tag, as the `ETag` and `If-None-Match` headers carry it: the
/// farm's version, quoted.
pub(crate) fn entity_tag_schema() -> ParameterSchemaOrContent {
    ParameterSchemaOrContent::Schema(SchemaObject {
        json_schema: schemars::json_schema!({ "type": "string" }),
        external_docs: None,
        example: Some(Value::from("\"1795763412521734\"")),
    })
}

/// The document as served: with the gateway's own bounds written in, as JSON.
pub fn render(mut api: OpenApi, config: &Config) -> Vec<u8> {
    api.openapi = "3.1.0".into();
    let mut doc = match serde_json::to_value(&api) {
        Ok(doc) => doc,
        Err(e) => {
            tracing::error!(error = %e, "Cannot serialise the OpenAPI document.");
            return b"{}".to_vec();
        }
    };
    let seconds = config.max_load_test_seconds;
    for (pointer, value) in [
        (
            "/components/schemas/LoadTestRequest/properties/duration_seconds",
            seconds,
        ),
        (
            "/components/schemas/LoadTestRequest/properties/ramp_up_seconds",
            seconds,
        ),
        (
            "/components/schemas/ScaleRequest/properties/servers",
            config.max_servers,
        ),
    ] {
        set_maximum(&mut doc, pointer, value);
    }
    serde_json::to_vec(&doc).unwrap_or_else(|_| b"{}".to_vec())
}

/// Sets `maximum` on the schema at `pointer`, or on its non-null alternative when the
/// field is optional.
fn set_maximum(doc: &mut Value, pointer: &str, maximum: u32) {
    let Some(schema) = doc.pointer_mut(pointer) else {
        tracing::error!(pointer, "OpenAPI schema to patch is missing.");
        return;
    };
    if schema.get("anyOf").is_some() {
        if let Some(Value::Array(alternatives)) = schema.get_mut("anyOf") {
            for alternative in alternatives {
                if let Some(object) = alternative.as_object_mut()
                    && object.contains_key("maximum")
                {
                    object.insert("maximum".into(), maximum.into());
                }
            }
        }
    } else if let Some(object) = schema.as_object_mut() {
        object.insert("maximum".into(), maximum.into());
    }
}

/// The `/docs` page: Swagger UI with its assets inline, pointed at `/openapi.json`, with
/// the online spec validator (a call to validator.swagger.io) turned off.
pub fn page() -> String {
    let html = aide::swagger::Swagger::new("/openapi.json")
        .with_title("farm API")
        .html();
    html.replacen(
        "url: '/openapi.json',",
        "url: '/openapi.json', validatorUrl: null,",
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_needs_no_network() {
        let page = page();
        assert!(page.contains("validatorUrl: null"), "the validator is off");
        for remote in ["src=\"http", "href=\"http", "src='http", "@import", "cdn"] {
            assert!(
                !page.to_ascii_lowercase().contains(remote),
                "the page loads {remote}"
            );
        }
    }
}
