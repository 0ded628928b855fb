//! The API's own documentation, served without a token: the OpenAPI
//! document as YAML (`/openapi.yaml`, the repository's file byte for byte)
//! and as JSON (`/v3/api-docs`, converted once at start-up), and Swagger UI
//! at `/swagger-ui/` (`/` and `/swagger-ui` redirect there).
//!
//! Swagger UI's files are vendored under `static/swagger-ui/` (see its
//! `VERSION`) and compiled into the binary, so the UI works without internet
//! access; only `index.html` and `swagger-initializer.js` there are ours.

use std::sync::OnceLock;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::{
    assets::{embedded, no_cache, serve, Asset},
    error::ApiError,
    resource::{get_or_head, get_resource},
};

/// The OpenAPI document, exactly as in the repository.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// The `Content-Type` of `/openapi.yaml` (RFC 9512).
pub const YAML_CONTENT_TYPE: &str = "application/yaml";

/// The security policy of the Swagger UI page: everything from this origin;
/// inline styles only because Swagger UI's React components use them.
const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self' data:; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Every file under `/swagger-ui/`, by name.
const ASSETS: &[Asset] = &[
    embedded!(
        "swagger-ui",
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8"
    ),
    embedded!(
        "swagger-ui",
        "swagger-initializer.js",
        "text/javascript; charset=utf-8"
    ),
    embedded!("swagger-ui", "swagger-ui.css", "text/css; charset=utf-8"),
    embedded!("swagger-ui", "index.css", "text/css; charset=utf-8"),
    embedded!("swagger-ui", "favicon-32x32.png", "image/png"),
    embedded!("swagger-ui", "favicon-16x16.png", "image/png"),
    embedded!("swagger-ui", "LICENSE", "text/plain; charset=utf-8"),
    embedded!("swagger-ui", "NOTICE", "text/plain; charset=utf-8"),
    embedded!(
        "swagger-ui",
        "swagger-ui-bundle.js.LICENSE.txt",
        "text/plain; charset=utf-8"
    ),
    embedded!("swagger-ui", "VERSION", "text/plain; charset=utf-8"),
];

/// Swagger UI's page.
const INDEX_HTML: &[u8] = include_bytes!("../../static/swagger-ui/index.html");

static API_DOCS_JSON: OnceLock<Result<Bytes, String>> = OnceLock::new();

/// The OpenAPI document as JSON, converted from the YAML on first use.
pub fn api_docs_json() -> Result<Bytes, String> {
    API_DOCS_JSON
        .get_or_init(|| {
            // Through the YAML value, which keeps the document's key order
            // (Swagger UI lists paths in that order).
            let mut value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(OPENAPI_YAML).map_err(|e| e.to_string())?;
            value.apply_merge().map_err(|e| e.to_string())?;
            serde_json::to_vec(&value)
                .map(Bytes::from)
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// Converts the document once, at start-up: a server whose embedded spec
/// does not parse refuses to start.
pub fn init() -> std::io::Result<()> {
    api_docs_json()
        .map(drop)
        .map_err(|e| std::io::Error::other(format!("openapi.yaml does not parse: {e}")))
}

/// Registers the documentation routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_resource("/", get_or_head().to(root)))
        .service(get_resource(
            "/openapi.yaml",
            get_or_head().to(openapi_yaml),
        ))
        .service(get_resource("/v3/api-docs", get_or_head().to(openapi_json)))
        .service(get_resource(
            "/swagger-ui",
            get_or_head().to(swagger_ui_slash),
        ))
        .service(get_resource(
            "/swagger-ui/",
            get_or_head().to(swagger_ui_index),
        ))
        .service(get_resource(
            "/swagger-ui/{asset}",
            get_or_head().to(swagger_ui_asset),
        ));
}

fn redirect(status: actix_web::http::StatusCode, to: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::LOCATION, to))
        .finish()
}

/// `/` is the documentation.
async fn root() -> HttpResponse {
    redirect(actix_web::http::StatusCode::FOUND, "/swagger-ui/")
}

/// Swagger UI's relative links need the trailing slash.
async fn swagger_ui_slash() -> HttpResponse {
    redirect(
        actix_web::http::StatusCode::MOVED_PERMANENTLY,
        "/swagger-ui/",
    )
}

async fn openapi_yaml() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(YAML_CONTENT_TYPE)
        .insert_header(no_cache())
        .body(OPENAPI_YAML)
}

async fn openapi_json(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = super::listing::ListingQuery::parse(req.query_string())?;
    let examples: Vec<&str> = query
        .pairs
        .iter()
        .filter(|(k, _)| k == "examples")
        .map(|(_, v)| v.as_str())
        .collect();
    let json = match examples.as_slice() {
        [] => api_docs_json().map_err(|e| ApiError::Internal(e.into()))?,
        ["today"] => {
            api_docs_json_for_today(chrono::Utc::now()).map_err(|e| ApiError::Internal(e.into()))?
        }
        _ => {
            return Err(ApiError::InvalidRequest(
                "The parameter `examples` takes one value: `today`.".into(),
            ))
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(no_cache())
        .body(json))
}

/// The OpenAPI document as JSON with the examples Swagger UI's "Try it out"
/// starts from made valid today and small: `period` a minute and
/// `datetime` the last complete minute (then hour, day, month), `month`
/// the previous month, `day` yesterday, and no `sort` (ascending) or `tz`, so that
/// on the demo the first try shows data at once (a day window of the demo
/// is megabytes, which Swagger UI takes a minute to show; issue 26).
pub fn api_docs_json_for_today(now: chrono::DateTime<chrono::Utc>) -> Result<Bytes, String> {
    use chrono::{Datelike, Duration};
    use serde_yaml_ng::{Mapping, Value};
    let mut spec: Value = serde_yaml_ng::from_str(OPENAPI_YAML).map_err(|e| e.to_string())?;
    spec.apply_merge().map_err(|e| e.to_string())?;
    let yesterday = (now - Duration::days(1)).format("%Y-%m-%d").to_string();
    let last_hour = (now - Duration::hours(1)).format("%Y-%m-%dT%H").to_string();
    let last_minute = (now - Duration::minutes(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let first = now
        .date_naive()
        .with_day(1)
        .and_then(|d| d.pred_opt())
        .unwrap_or(now.date_naive());
    let last_month = format!("{:04}-{:02}", first.year(), first.month());
    let mut datetime_examples = Mapping::new();
    // Swagger UI starts from the first example.
    for (name, value) in [
        ("minute", &last_minute),
        ("hour", &last_hour),
        ("day", &yesterday),
        ("month", &last_month),
    ] {
        let mut example = Mapping::new();
        example.insert("value".into(), Value::String(value.clone()));
        datetime_examples.insert(name.into(), Value::Mapping(example));
    }
    let patch = |parameter: &mut Value| {
        let Some(parameter) = parameter.as_mapping_mut() else {
            return;
        };
        let name = parameter
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let in_path = parameter.get("in").and_then(Value::as_str) == Some("path");
        match name.as_deref() {
            Some("period") if in_path => {
                if let Some(schema) = parameter.get_mut("schema").and_then(Value::as_mapping_mut) {
                    schema.insert("example".into(), Value::String("minute".into()));
                }
            }
            Some("datetime") => {
                parameter.insert("examples".into(), Value::Mapping(datetime_examples.clone()));
            }
            // Without a zone: the example minute is a UTC one.
            Some("sort") | Some("tz") => {
                parameter.remove("example");
                if let Some(schema) = parameter.get_mut("schema").and_then(Value::as_mapping_mut) {
                    schema.remove("example");
                }
            }
            Some("month") | Some("day") => {
                let value = if name.as_deref() == Some("month") {
                    &last_month
                } else {
                    &yesterday
                };
                if let Some(schema) = parameter.get_mut("schema").and_then(Value::as_mapping_mut) {
                    schema.insert("example".into(), Value::String(value.clone()));
                }
            }
            _ => {}
        }
    };
    if let Some(parameters) = spec
        .get_mut("components")
        .and_then(|c| c.get_mut("parameters"))
        .and_then(Value::as_mapping_mut)
    {
        for (_, parameter) in parameters.iter_mut() {
            patch(parameter);
        }
    }
    if let Some(paths) = spec.get_mut("paths").and_then(Value::as_mapping_mut) {
        for (_, item) in paths.iter_mut() {
            let Some(item) = item.as_mapping_mut() else {
                continue;
            };
            for (_, operation) in item.iter_mut() {
                if let Some(parameters) = operation
                    .get_mut("parameters")
                    .and_then(Value::as_sequence_mut)
                {
                    parameters.iter_mut().for_each(&patch);
                }
            }
        }
    }
    serde_json::to_vec(&spec)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

async fn swagger_ui_index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(no_cache())
        .insert_header((header::CONTENT_SECURITY_POLICY, UI_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(INDEX_HTML)
}

async fn swagger_ui_asset(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, ASSETS, |name| name == "swagger-initializer.js")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_converts_to_json() {
        let json = api_docs_json().unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert!(value["paths"].is_object());
        assert!(value["openapi"].as_str().unwrap().starts_with("3."));
    }

    #[test]
    fn every_asset_is_non_empty() {
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{}", asset.name);
        }
        assert!(!INDEX_HTML.is_empty());
    }
}
