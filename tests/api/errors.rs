//! Error responses: status, ErrorResponse body and headers.

use serde_json::Value;

use crate::helpers::{
    body_of, fresh_database, spawn_app, spawn_app_on, AppOptions, TestApp, TOKEN,
};

async fn error_of<S>(response: &mut awc::ClientResponse<S>) -> (String, String)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    let body = body_of(response).await;
    let json: Value = serde_json::from_slice(&body).expect("an ErrorResponse");
    assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
    (
        json["error"].as_str().unwrap().to_owned(),
        json["error_description"].as_str().unwrap().to_owned(),
    )
}

async fn status_and_error(
    app: &TestApp,
    path: &str,
    accept: Option<&str>,
) -> (u16, String, String) {
    let mut request = app.get(path);
    if let Some(accept) = accept {
        request = request.insert_header(("Accept", accept));
    }
    let mut response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let (code, description) = error_of(&mut response).await;
    (status, code, description)
}

#[actix_web::test]
async fn invalid_period_is_400_with_the_valid_values() {
    let app = spawn_app().await;
    let (status, code, description) =
        status_and_error(&app, "/api/v1/statistics/events/year/2021", None).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert_eq!(
        description,
        "Valid values for the time period: minute, hour, day, week, month."
    );
}

#[actix_web::test]
async fn invalid_datetimes_are_400_showing_the_expected_form() {
    let app = spawn_app().await;
    for (path, form) in [
        ("minute/2021-04-10", "YYYY-MM-DDTHH:MM"),
        ("hour/2021-04-24T13:30", "YYYY-MM-DDTHH"),
        ("day/2021-02-30", "YYYY-MM-DD"),
        ("day/yesterday", "YYYY-MM-DD"),
        ("week/2021-04", "YYYY-MM-DD"),
        ("month/2021-13", "YYYY-MM"),
        ("month/2021-04-02", "YYYY-MM"),
        ("minute/2021-04-10T00:00Z", "YYYY-MM-DDTHH:MM"),
    ] {
        let (status, code, description) =
            status_and_error(&app, &format!("/api/v1/statistics/events/{path}"), None).await;
        assert_eq!((status, code.as_str()), (400, "invalid_request"), "{path}");
        assert!(description.contains(form), "{path}: {description}");
    }
}

#[actix_web::test]
async fn csv_only_clients_get_the_real_status_too() {
    let app = spawn_app().await;
    let (status, code, _) =
        status_and_error(&app, "/api/v1/statistics/events/decade", Some("text/csv")).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
}

#[actix_web::test]
async fn bad_format_parameter_is_400() {
    let app = spawn_app().await;
    let (status, code, description) = status_and_error(
        &app,
        "/api/v1/statistics/events/day/2021-04-24?format=xml",
        None,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert!(description.contains("csv"), "{description}");
}

#[actix_web::test]
async fn unacceptable_media_type_is_406_listing_supported_types() {
    let app = spawn_app().await;
    let (status, code, description) = status_and_error(
        &app,
        "/api/v1/statistics/events/day/2021-04-24",
        Some("text/html, application/xml;q=0.9"),
    )
    .await;
    assert_eq!((status, code.as_str()), (406, "not_acceptable"));
    assert!(
        description.contains("application/json") && description.contains("text/csv"),
        "{description}"
    );
}

#[actix_web::test]
async fn missing_or_wrong_token_is_401_with_www_authenticate() {
    let app = spawn_app().await;
    let url = format!("{}/api/v1/statistics/events/day/2021-04-24", app.address);
    let cases: [Option<String>; 4] = [
        None,
        Some("Bearer wrong".into()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
    ];
    for authorization in cases {
        let mut request = app.client().get(&url);
        if let Some(value) = &authorization {
            request = request.insert_header(("Authorization", value.as_str()));
        }
        let mut response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{authorization:?}");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let (code, _) = error_of(&mut response).await;
        assert_eq!(code, "invalid_token");
    }
    // The scheme is case-insensitive.
    let mut ok = app
        .client()
        .get(&url)
        .insert_header(("Authorization", format!("bearer {TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    body_of(&mut ok).await;
}

#[actix_web::test]
async fn unknown_path_is_404_and_wrong_method_405() {
    let app = spawn_app().await;
    let (status, code, _) = status_and_error(&app, "/api/v1/nothing/here", None).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));

    let mut response = app
        .client()
        .post(format!(
            "{}/api/v1/statistics/events/day/2021-04-24",
            app.address
        ))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers().get("allow").unwrap(),
        "GET, HEAD, OPTIONS"
    );
    let (code, _) = error_of(&mut response).await;
    assert_eq!(code, "method_not_allowed");
}

#[actix_web::test]
async fn unreachable_database_is_503() {
    let (name, config) = fresh_database().await;
    // Point the app at a socket directory where no server listens.
    let mut nowhere = tokio_postgres::Config::new();
    nowhere
        .host_path("/nonexistent-acctstream-socket-dir")
        .user("acctstream")
        .dbname(&name);
    let options = AppOptions {
        app_database: Some(nowhere),
        ..AppOptions::default()
    };
    let app = spawn_app_on(name, config, options).await;
    let (status, code, _) =
        status_and_error(&app, "/api/v1/statistics/events/day/2021-04-24", None).await;
    assert_eq!((status, code.as_str()), (503, "temporarily_unavailable"));
}
