//! The served documentation: the spec is the repository's file, Swagger UI
//! works from the service alone, and the spec and the routes the app
//! registers describe the same set of (method, path) operations.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::{
    dev::Service,
    http::{header, Method},
    test as actix_test, web, App, HttpRequest, HttpResponse,
};
use serde_json::Value;

use crate::helpers::{body_of, spawn_app};

fn repository_spec() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("read openapi.yaml")
}

#[actix_web::test]
async fn served_spec_is_the_repository_file_in_yaml_and_json() {
    let app = spawn_app().await;
    let client = app.client();

    let mut yaml = client
        .get(format!("{}/openapi.yaml", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(yaml.status(), 200);
    assert_eq!(
        yaml.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/yaml"
    );
    let served = body_of(&mut yaml).await;
    assert!(
        served == repository_spec().as_bytes(),
        "/openapi.yaml differs from the repository's openapi.yaml"
    );

    let mut json = client
        .get(format!("{}/v3/api-docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    assert_eq!(
        json.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    let text = String::from_utf8(body_of(&mut json).await).unwrap();
    let served: Value = serde_json::from_str(&text).unwrap();
    let expected: Value = serde_yaml_ng::from_str(&repository_spec()).unwrap();
    assert_eq!(served, expected);
    // The JSON keeps the YAML's order of paths (Swagger UI lists them so).
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&repository_spec()).unwrap();
    let paths_at = text.find(r#""paths":{"#).unwrap();
    let mut last = paths_at;
    for path in yaml["paths"].as_mapping().unwrap().keys() {
        let key = format!(
            "{}:{{",
            serde_json::to_string(path.as_str().unwrap()).unwrap()
        );
        let at = paths_at + text[paths_at..].find(&key).unwrap();
        assert!(at > last, "{key} is out of order in /v3/api-docs");
        last = at;
    }
}

#[actix_web::test]
async fn swagger_ui_is_served_by_the_service_alone() {
    let app = spawn_app().await;
    // No redirect following: check each hop.
    let client = awc::Client::builder().disable_redirects().finish();
    let get = |path: &str| client.get(format!("{}{path}", app.address)).send();

    let root = get("/").await.unwrap();
    assert_eq!(root.status(), 302);
    assert_eq!(
        root.headers().get(header::LOCATION).unwrap(),
        "/swagger-ui/"
    );
    let no_slash = get("/swagger-ui").await.unwrap();
    assert_eq!(no_slash.status(), 301);
    assert_eq!(
        no_slash.headers().get(header::LOCATION).unwrap(),
        "/swagger-ui/"
    );

    let mut page = get("/swagger-ui/").await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get(header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    let html = String::from_utf8(body_of(&mut page).await).unwrap();

    // Every file the page loads comes from the service, with its type.
    let mut loaded = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in html.split(attribute).skip(1) {
            loaded.push(piece.split('"').next().unwrap().to_owned());
        }
    }
    assert!(
        loaded.contains(&"swagger-ui-bundle.js".to_owned()),
        "{html}"
    );
    assert!(
        loaded.contains(&"swagger-initializer.js".to_owned()),
        "{html}"
    );
    for file in &loaded {
        assert!(
            !file.contains("://") && !file.starts_with("//"),
            "{file} is not ours"
        );
        let mut response = get(&format!("/swagger-ui/{file}")).await.unwrap();
        assert_eq!(response.status(), 200, "{file}");
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let expected = match file.rsplit('.').next().unwrap() {
            "js" => "text/javascript",
            "css" => "text/css",
            "png" => "image/png",
            other => panic!("unexpected file type {other}"),
        };
        assert!(content_type.starts_with(expected), "{file}: {content_type}");
        let body = body_of(&mut response).await;
        let vendored = std::fs::read(format!(
            "{}/static/swagger-ui/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert!(body == vendored, "{file} differs from static/swagger-ui");
        if file != "swagger-initializer.js" {
            let cache = response.headers().get(header::CACHE_CONTROL).unwrap();
            assert!(cache.to_str().unwrap().contains("max-age="), "{file}");
        }
    }

    // The initializer loads our own spec and keeps the pasted token.
    let mut init = get("/swagger-ui/swagger-initializer.js").await.unwrap();
    let init = String::from_utf8(body_of(&mut init).await).unwrap();
    assert!(init.contains("../v3/api-docs"), "{init}");
    assert!(init.contains("persistAuthorization: true"), "{init}");
    assert!(
        !init.contains("http"),
        "the initializer names no other host"
    );

    let unknown = get("/swagger-ui/nope.js").await.unwrap();
    assert_eq!(unknown.status(), 404);
}

/// Every (method, path template) the app routes, found by walking
/// actix-web's resource map (its `Debug` output: actix exposes no other
/// listing) and probing each template with each method.
async fn registered_operations() -> BTreeSet<(String, String)> {
    let app = actix_test::init_service(
        App::new()
            .configure(|cfg| acctstream::http::routes(cfg, acctstream::kinds::REGISTRY))
            .wrap_fn(|req, srv| {
                let matched = req.match_pattern();
                let call = srv.call(req);
                async move {
                    let mut response = call.await?;
                    if let Some(pattern) = matched {
                        response.headers_mut().insert(
                            header::HeaderName::from_static("x-test-matched"),
                            header::HeaderValue::from_str(&pattern).unwrap(),
                        );
                    }
                    Ok(response)
                }
            })
            .default_service(web::to(|req: HttpRequest| async move {
                HttpResponse::NotFound().body(format!("{:?}", req.resource_map()))
            })),
    )
    .await;

    let probe = actix_test::TestRequest::get()
        .uri("/__no_such_route__/__probe__")
        .to_request();
    let response = actix_test::call_service(&app, probe).await;
    let map = String::from_utf8(actix_test::read_body(response).await.to_vec()).unwrap();
    let templates = templates_in_resource_map(&map);
    assert!(
        templates.contains("/healthz")
            && templates.contains("/api/v1/statistics/events/{period}/{datetime}"),
        "walking the resource map found only {templates:?}; has actix-web's Debug output changed?"
    );

    let mut operations = BTreeSet::new();
    for template in &templates {
        let path = sample_path(template);
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            let request = actix_test::TestRequest::default()
                .method(method.clone())
                .uri(&path)
                .to_request();
            let response = actix_test::call_service(&app, request).await;
            let matched = response
                .headers()
                .get("x-test-matched")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(
                matched.as_deref(),
                Some(template.as_str()),
                "{method} {path} did not reach {template}"
            );
            if response.status() != 405 {
                operations.insert((method.as_str().to_lowercase(), template.clone()));
            }
        }
    }
    operations
}

/// A concrete path for a template: each `{name}` or `{name:regex}` becomes
/// a plain segment.
fn sample_path(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        out.push_str("x1");
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// `{name:regex}` → `{name}`, as OpenAPI writes it.
fn openapi_template(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..=open]);
        let close = rest[open..].find('}').unwrap() + open;
        let name = &rest[open + 1..close];
        out.push_str(name.split(':').next().unwrap());
        out.push('}');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[actix_web::test]
async fn every_route_is_in_the_spec_and_every_spec_path_is_routed() {
    let registered: BTreeSet<(String, String)> = registered_operations()
        .await
        .into_iter()
        .map(|(m, t)| (m, openapi_template(&t)))
        .collect();

    let spec: Value = serde_yaml_ng::from_str(&repository_spec()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
            {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }

    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}\n\
         openapi.yaml operations the app does not route: {unrouted:?}"
    );
}

/// The leaf resource templates in the `Debug` rendering of actix-web's
/// `ResourceMap`: nodes nest through `nodes: Some([...])`, each with a
/// `pattern: ResourceDef { .., patterns: Single("..") | List([..]) }`;
/// a leaf has `nodes: None`. Scopes prefix their children's patterns.
fn templates_in_resource_map(debug: &str) -> BTreeSet<String> {
    let value = DebugParser::new(debug).value();
    let mut out = BTreeSet::new();
    collect_templates(&value, "", &mut out);
    out
}

fn collect_templates(node: &Dbg, prefix: &str, out: &mut BTreeSet<String>) {
    let Dbg::Struct(name, fields) = node else {
        return;
    };
    assert_eq!(name, "ResourceMap");
    let patterns = match fields.get("pattern") {
        Some(Dbg::Struct(_, def)) => match def.get("patterns") {
            Some(Dbg::Tuple(kind, items)) if kind == "Single" => vec![items[0].string()],
            Some(Dbg::Tuple(kind, items)) if kind == "List" => match &items[0] {
                Dbg::List(list) => list.iter().map(Dbg::string).collect(),
                other => panic!("unexpected List contents {other:?}"),
            },
            other => panic!("unexpected patterns {other:?}"),
        },
        other => panic!("unexpected pattern {other:?}"),
    };
    match fields.get("nodes") {
        Some(Dbg::Tuple(kind, items)) if kind == "Some" => {
            let Dbg::List(children) = &items[0] else {
                panic!("nodes is not a list");
            };
            for pattern in &patterns {
                for child in children {
                    collect_templates(child, &format!("{prefix}{pattern}"), out);
                }
            }
        }
        Some(Dbg::Ident(none)) if none == "None" => {
            for pattern in &patterns {
                out.insert(format!("{prefix}{pattern}"));
            }
        }
        other => panic!("unexpected nodes {other:?}"),
    }
}

/// A value of Rust's `Debug` output.
#[derive(Debug)]
enum Dbg {
    Str(String),
    Ident(String),
    Struct(String, BTreeMap<String, Dbg>),
    Tuple(String, Vec<Dbg>),
    List(Vec<Dbg>),
    /// A map (`named`, which the walk skips: its values repeat nodes).
    Map,
}

impl Dbg {
    fn string(&self) -> String {
        match self {
            Dbg::Str(s) => s.clone(),
            other => panic!("expected a string, got {other:?}"),
        }
    }
}

struct DebugParser<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> DebugParser<'a> {
    fn new(text: &'a str) -> Self {
        DebugParser {
            text: text.as_bytes(),
            at: 0,
        }
    }

    fn skip_space(&mut self) {
        while self.at < self.text.len() && self.text[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> u8 {
        self.skip_space();
        self.text.get(self.at).copied().unwrap_or(0)
    }

    fn expect(&mut self, byte: u8) {
        assert_eq!(
            self.peek() as char,
            byte as char,
            "at byte {} of the resource map",
            self.at
        );
        self.at += 1;
    }

    fn value(&mut self) -> Dbg {
        match self.peek() {
            b'"' => Dbg::Str(self.string()),
            b'[' => {
                self.at += 1;
                Dbg::List(self.sequence(b']'))
            }
            b'(' => {
                self.at += 1;
                Dbg::Tuple(String::new(), self.sequence(b')'))
            }
            b'{' => {
                self.at += 1;
                while self.peek() != b'}' {
                    self.value();
                    self.expect(b':');
                    self.value();
                    if self.peek() == b',' {
                        self.at += 1;
                    }
                }
                self.at += 1;
                Dbg::Map
            }
            _ => {
                let ident = self.ident();
                match self.peek() {
                    b'{' => {
                        self.at += 1;
                        let mut fields = BTreeMap::new();
                        while self.peek() != b'}' {
                            if self.text[self.at..].starts_with(b"..") {
                                self.at += 2; // `finish_non_exhaustive`
                                continue;
                            }
                            let name = self.ident();
                            self.expect(b':');
                            fields.insert(name, self.value());
                            if self.peek() == b',' {
                                self.at += 1;
                            }
                        }
                        self.at += 1;
                        Dbg::Struct(ident, fields)
                    }
                    b'(' => {
                        self.at += 1;
                        Dbg::Tuple(ident, self.sequence(b')'))
                    }
                    _ => Dbg::Ident(ident),
                }
            }
        }
    }

    fn sequence(&mut self, close: u8) -> Vec<Dbg> {
        let mut items = Vec::new();
        while self.peek() != close {
            items.push(self.value());
            if self.peek() == b',' {
                self.at += 1;
            }
        }
        self.at += 1;
        items
    }

    fn ident(&mut self) -> String {
        self.skip_space();
        let start = self.at;
        while self.at < self.text.len()
            && (self.text[self.at].is_ascii_alphanumeric() || b"_-.+".contains(&self.text[self.at]))
        {
            self.at += 1;
        }
        assert!(
            self.at > start,
            "unexpected {:?} at byte {} of the resource map",
            self.text.get(self.at).map(|b| *b as char),
            self.at
        );
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    fn string(&mut self) -> String {
        self.expect(b'"');
        let mut out = Vec::new();
        while self.text[self.at] != b'"' {
            if self.text[self.at] == b'\\' {
                self.at += 1;
                match self.text[self.at] {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'0' => out.push(0),
                    b'u' => {
                        // \u{XXXX}
                        let end = self.at
                            + self.text[self.at..]
                                .iter()
                                .position(|b| *b == b'}')
                                .unwrap();
                        let hex = std::str::from_utf8(&self.text[self.at + 2..end]).unwrap();
                        let c = char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap();
                        out.extend_from_slice(c.to_string().as_bytes());
                        self.at = end;
                    }
                    other => out.push(other),
                }
            } else {
                out.push(self.text[self.at]);
            }
            self.at += 1;
        }
        self.at += 1;
        String::from_utf8(out).unwrap()
    }
}

#[test]
fn debug_parser_reads_nested_values() {
    let text = r#"ResourceMap { pattern: ResourceDef { id: 0, is_prefix: false, name: Some("x"), patterns: List(["/a/{b}", "/c\"d"]), segments: [Const("/a"), Var("b")], pat_type: Dynamic(Regex("^/a/(?P<b>[^/]+)$"), ["b"]) }, named: {"x": Weak}, parent: RefCell { value: (Weak) }, nodes: None }"#;
    let templates = templates_in_resource_map(text);
    assert_eq!(
        templates,
        BTreeSet::from(["/a/{b}".to_owned(), "/c\"d".to_owned()])
    );
    assert_eq!(sample_path("/a/{b}/c/{d:\\d+}"), "/a/x1/c/x1");
    assert_eq!(openapi_template("/a/{b}/c/{d:\\d+}"), "/a/{b}/c/{d}");
}

#[actix_web::test]
async fn resource_map_walk_sees_scopes_and_lists() {
    let app = actix_test::init_service(
        App::new()
            .service(
                web::scope("/s")
                    .service(web::resource("/r/{id}").to(HttpResponse::Ok))
                    .service(web::resource(["/a", "/b/{x:\\d+}"]).to(HttpResponse::Ok)),
            )
            .service(web::resource("/top").to(HttpResponse::Ok))
            .default_service(web::to(|req: HttpRequest| async move {
                HttpResponse::NotFound().body(format!("{:?}", req.resource_map()))
            })),
    )
    .await;
    let probe = actix_test::TestRequest::get().uri("/nothing").to_request();
    let map = actix_test::read_body(actix_test::call_service(&app, probe).await).await;
    let templates = templates_in_resource_map(std::str::from_utf8(&map).unwrap());
    assert_eq!(
        templates,
        BTreeSet::from([
            "/s/r/{id}".to_owned(),
            "/s/a".to_owned(),
            "/s/b/{x:\\d+}".to_owned(),
            "/top".to_owned(),
        ])
    );
}

/// Each kind's record schema and CSV header in `openapi.yaml` agree with its
/// one description in `src/kinds/`: the same properties in the same order,
/// the same JSON types, `nullable` exactly for nullable columns, `required`
/// exactly the others, and the CSV header written out in the response text.
/// Its filters are documented query parameters of its window operations.
#[test]
fn each_kinds_schema_and_csv_columns_match_its_description() {
    let spec: Value = serde_yaml_ng::from_str(&repository_spec()).unwrap();
    for kind in acctstream::kinds::REGISTRY.kinds() {
        let schema = &spec["components"]["schemas"][kind.schema];
        let properties = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("openapi.yaml has no schema {}", kind.schema));
        // serde_json sorts keys: read the order from the YAML mapping itself.
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&repository_spec()).unwrap();
        let documented: Vec<&str> = yaml["components"]["schemas"][kind.schema]["properties"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(documented.len(), properties.len());
        let described: Vec<&str> = kind.columns.iter().map(|c| c.json).collect();
        assert_eq!(documented, described, "{}: properties", kind.schema);
        for column in kind.columns {
            let property = &properties[column.json];
            assert_eq!(
                property["type"],
                column.ty.openapi_type(),
                "{}.{}: type",
                kind.schema,
                column.json
            );
            assert_eq!(
                property["nullable"].as_bool().unwrap_or(false),
                column.nullable,
                "{}.{}: nullable",
                kind.schema,
                column.json
            );
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let not_null: Vec<&str> = kind
            .columns
            .iter()
            .filter(|c| !c.nullable)
            .map(|c| c.json)
            .collect();
        assert_eq!(required, not_null, "{}: required", kind.schema);

        // The CSV header row, as the encoder writes it, appears in the
        // description of the window response's text/csv body.
        let header: Vec<&str> = kind.columns.iter().map(|c| c.csv).collect();
        let header = format!("`{}`", header.join(","));
        let get = &spec["paths"][format!("{}/{{period}}/{{datetime}}", kind.path)]["get"];
        let response = get["responses"]["200"]["$ref"].as_str().unwrap();
        let response = &spec["components"]["responses"][response.rsplit('/').next().unwrap()];
        let csv = response["content"]["text/csv"]["schema"]["description"]
            .as_str()
            .unwrap();
        assert!(
            csv.contains(&header),
            "{}: CSV header {header} not in {csv}",
            kind.name
        );
        assert!(
            response["content"]["application/x-ndjson"].is_object(),
            "{}: NDJSON undocumented",
            kind.name
        );

        // Every filter is a documented parameter of both window operations.
        for template in ["{period}", "{period}/{datetime}"] {
            let operation = &spec["paths"][format!("{}/{template}", kind.path)]["get"];
            let params: Vec<String> = operation["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| match p["$ref"].as_str() {
                    Some(r) => spec["components"]["parameters"][r.rsplit('/').next().unwrap()]
                        ["name"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    None => p["name"].as_str().unwrap().to_owned(),
                })
                .collect();
            for filter in kind.filters {
                assert!(
                    params.iter().any(|p| p == filter.param),
                    "{}/{template}: filter {} undocumented",
                    kind.path,
                    filter.param
                );
            }
        }
    }
}

/// Each kind's ingest record schema in `openapi.yaml` lists exactly its
/// ingest fields, in order (then `tenant` where the kind has organizations), with exactly the required ones required, and
/// rejects unknown fields as the service does.
#[test]
fn each_kinds_ingest_schema_matches_its_fields() {
    let spec: Value = serde_yaml_ng::from_str(&repository_spec()).unwrap();
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&repository_spec()).unwrap();
    for kind in acctstream::kinds::REGISTRY.kinds() {
        let Some(route) = &kind.ingest else { continue };
        let schema = &spec["components"]["schemas"][route.openapi];
        let documented: Vec<&str> = yaml["components"]["schemas"][route.openapi]["properties"]
            .as_mapping()
            .unwrap_or_else(|| panic!("openapi.yaml has no schema {}", route.openapi))
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        // Then the organization a record may name, for a kind that keeps
        // organizations apart.
        let fields: Vec<&str> = route
            .schema
            .fields
            .iter()
            .map(|f| f.name)
            .chain(
                route
                    .schema
                    .tenant
                    .map(|_| acctstream::core::ingest::TENANT_FIELD),
            )
            .collect();
        assert_eq!(documented, fields, "{}", route.openapi);
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let needed: Vec<&str> = route
            .schema
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name)
            .collect();
        assert_eq!(required, needed, "{}: required", route.openapi);
        assert_eq!(schema["additionalProperties"], false, "{}", route.openapi);
        let post = &spec["paths"][route.path]["post"];
        assert!(post.is_object(), "{} is not documented", route.path);
    }
}

/// Issue 11, item 8, and issue 26, item 2: what Swagger UI loads has
/// examples valid today and small, so the first "Try it out" of a window
/// shows data at once: the `period` example is `minute`, the `datetime`
/// example the last complete minute, `sort` has none; the query parameter
/// `period` (a span of days) keeps its own; highlighting is off.
#[actix_web::test]
async fn swagger_ui_examples_are_valid_today() {
    let app = spawn_app().await;
    let client = app.client();
    let mut init = client
        .get(format!("{}/swagger-ui/swagger-initializer.js", app.address))
        .send()
        .await
        .unwrap();
    let init = String::from_utf8(body_of(&mut init).await).unwrap();
    assert!(init.contains("v3/api-docs?examples=today"), "{init}");
    assert!(init.contains("syntaxHighlight: false"), "{init}");

    let before = chrono::Utc::now();
    let mut response = client
        .get(format!("{}/v3/api-docs?examples=today", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let raw = body_of(&mut response).await;
    let spec: Value = serde_json::from_slice(&raw).unwrap();
    // The same document with its keys in the order sent (Swagger UI starts
    // from the first example).
    let ordered: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&raw).unwrap();
    let first_example = |examples: &serde_yaml_ng::Value| -> (String, String) {
        let (name, example) = examples.as_mapping().unwrap().iter().next().unwrap();
        (
            name.as_str().unwrap().to_owned(),
            example["value"].as_str().unwrap().to_owned(),
        )
    };
    let after = chrono::Utc::now();
    let minutes: Vec<String> = [before, after]
        .iter()
        .map(|t| {
            (*t - chrono::Duration::minutes(1))
                .format("%Y-%m-%dT%H:%M")
                .to_string()
        })
        .collect();
    let yesterday = (after - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let parameters = &spec["components"]["parameters"];
    assert_eq!(parameters["period"]["schema"]["example"], "minute");
    assert!(parameters["historyPeriod"]["schema"]
        .get("example")
        .is_none());
    let datetime = &parameters["datetime"]["examples"];
    let (first, value) =
        first_example(&ordered["components"]["parameters"]["datetime"]["examples"]);
    assert_eq!(first, "minute");
    assert!(minutes.contains(&value), "{value}");
    assert_eq!(datetime["day"]["value"], yesterday);
    assert!(parameters["sort"].get("example").is_none());
    assert!(parameters["sort"]["schema"].get("example").is_none());
    assert_eq!(parameters["day"]["schema"]["example"], yesterday);
    // The inline datetime of the events window too.
    let inline = ordered["paths"]["/api/v1/statistics/events/{period}/{datetime}"]["get"]
        ["parameters"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("datetime"))
        .unwrap()
        .clone();
    let (first, minute) = first_example(&inline["examples"]);
    assert_eq!(first, "minute");
    assert!(minutes.contains(&minute), "{minute}");

    // The window those defaults name has data when that minute has events.
    app.insert(&[crate::helpers::event(&format!("{minute}:30Z"), "u")])
        .await;
    let mut response = app
        .get(&format!("/api/v1/statistics/events/minute/{minute}"))
        .send()
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&body_of(&mut response).await).unwrap();
    assert_eq!(json["events"].as_array().unwrap().len(), 1);

    // Without the parameter: the document as it is; anything else is a 400.
    let mut plain = client
        .get(format!("{}/v3/api-docs", app.address))
        .send()
        .await
        .unwrap();
    let plain: Value = serde_json::from_slice(&body_of(&mut plain).await).unwrap();
    assert_eq!(
        plain["components"]["parameters"]["sort"]["schema"]["example"],
        "-"
    );
    let response = client
        .get(format!("{}/v3/api-docs?examples=tomorrow", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

/// Issue 11, item 7: the README's ingest examples post current events with a
/// fresh `eventId` (a fixed date would be deleted by retention, a fixed ID
/// silently skipped on a rerun), and show the answer to expect.
#[test]
fn readme_ingest_examples_are_current() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut posts = 0;
    for block in readme.split("```sh").skip(1) {
        let block = block.split("```").next().unwrap();
        if !block.contains("--data-binary") {
            continue;
        }
        posts += 1;
        assert!(
            block.contains("$(date"),
            "an ingest example with a fixed time:\n{block}"
        );
        assert!(!block.contains(r#""timestamp":"20"#), "{block}");
        assert!(!block.contains(r#""eventId":"evt-1""#), "{block}");
        assert!(
            block.contains(r#""inserted":"#),
            "no answer shown:\n{block}"
        );
    }
    assert!(posts >= 2, "the README should show ingest for both kinds");
}

/// Issue 22: the README is the first-hour guide (short, with the two
/// commands), and every relative link of README.md, ARCHITECTURE.md and
/// docs/ points at a file that exists and, for a `#fragment` into Markdown,
/// at one of its headings.
#[test]
fn readme_and_docs_links_resolve() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.lines().count() <= 250,
        "README.md is the first hour: keep it short"
    );
    assert!(readme.contains("cargo run --release -- demo") && readme.contains("cargo test"));
    let anchor = |heading: &str| -> String {
        heading
            .trim_start_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    };
    let anchors_of = |path: &std::path::Path| -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut fenced = false;
        text.lines()
            .filter(|l| {
                if l.starts_with("```") {
                    fenced = !fenced;
                }
                !fenced && l.starts_with('#')
            })
            .map(anchor)
            .collect()
    };
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let link = regex_lite_links();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in link(&text) {
            if target.starts_with("http") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            assert!(
                resolved.exists(),
                "{}: link to {target}: no such file",
                file.display()
            );
            if let (Some(fragment), true) =
                (fragment, resolved.extension().is_some_and(|e| e == "md"))
            {
                assert!(
                    anchors_of(&resolved).iter().any(|a| a == fragment),
                    "{}: link to {target}: no such heading",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} links found");
}

/// The targets of Markdown links `[text](target)` in `text`.
fn regex_lite_links() -> impl Fn(&str) -> Vec<String> {
    |text: &str| {
        let mut targets = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            if let Some(end) = rest.find(')') {
                let target = &rest[..end];
                if !target.contains(' ') && !target.is_empty() {
                    targets.push(target.to_owned());
                }
                rest = &rest[end..];
            }
        }
        targets
    }
}

/// Issue 22: the configuration table of docs/configuration.md lists exactly
/// the variables acctstream reads (every command-line setting's `env`, and
/// `config::ENVIRONMENT`), each with its flag and its default as the
/// command line defines them.
#[test]
fn the_configuration_table_is_the_command_lines() {
    use clap::CommandFactory;
    use std::collections::BTreeMap;
    let table = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    // Row cells: environment | flag | default | meaning.
    let mut rows: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').skip(1).map(str::trim).collect();
        for name in cells[0].split(" / ") {
            rows.insert(
                name.trim_matches('`').to_owned(),
                (cells[1].to_owned(), cells[2].to_owned()),
            );
        }
    }
    // What the command line defines, over every subcommand.
    let mut defined: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    fn walk(command: &clap::Command, out: &mut BTreeMap<String, (String, Option<String>)>) {
        for arg in command.get_arguments() {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                let default = arg
                    .get_default_values()
                    .first()
                    .map(|d| d.to_string_lossy().into_owned());
                out.insert(
                    env.to_string_lossy().into_owned(),
                    (format!("`--{long}`"), default),
                );
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, out);
        }
    }
    walk(&acctstream::cli::Cli::command(), &mut defined);
    let mut expected: Vec<String> = defined.keys().cloned().collect();
    expected.extend(
        acctstream::config::ENVIRONMENT
            .iter()
            .map(|v| v.to_string()),
    );
    expected.sort();
    let listed: Vec<String> = rows.keys().cloned().collect();
    assert_eq!(
        listed, expected,
        "docs/configuration.md's table against the variables read"
    );
    for (env, (flag, default)) in &defined {
        let (row_flag, row_default) = &rows[env];
        assert_eq!(row_flag, flag, "{env}: the flag");
        if let Some(default) = default.as_deref().filter(|d| !d.is_empty()) {
            assert!(
                row_default.contains(&format!("`{default}`"))
                    || row_default.contains(&format!("`./{default}`")),
                "{env}: the table says {row_default}, the default is {default}"
            );
        }
    }
    for env in acctstream::config::ENVIRONMENT {
        assert_eq!(rows[env].0, "", "{env} has no flag");
    }
}

/// Issue 26, item 5: a generic OpenAPI tool can use every body. A request
/// body in another format than JSON (CSV, NDJSON) is a string with an
/// example, and each example is accepted as it stands; `/openapi.yaml`'s
/// response is an object, as the document it serves is.
#[actix_web::test]
async fn bodies_that_are_not_json_are_strings_with_working_examples() {
    let spec: Value = serde_yaml_ng::from_str(&repository_spec()).unwrap();
    let app = spawn_app().await;
    let mut tried = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        let Some(content) = item["post"]["requestBody"]["content"].as_object() else {
            continue;
        };
        for (media, body) in content {
            if media == "application/json" {
                continue;
            }
            assert_eq!(body["schema"]["type"], "string", "{path} {media}");
            let example = body["example"]
                .as_str()
                .unwrap_or_else(|| panic!("{path} {media} has no example"));
            let mut response = app
                .client()
                .post(format!("{}{path}", app.address))
                .insert_header((
                    "Authorization",
                    format!("Bearer {}", crate::helpers::WRITE_TOKEN),
                ))
                .insert_header(("Content-Type", media.as_str()))
                .send_body(example.to_owned())
                .await
                .unwrap();
            let status = response.status();
            let text = String::from_utf8_lossy(&body_of(&mut response).await).into_owned();
            assert!(status.is_success(), "{path} {media}: {status} {text}");
            tried += 1;
        }
    }
    assert_eq!(
        tried, 5,
        "the CSV and NDJSON bodies of both ingest routes, and RADIUS NDJSON"
    );

    let served = &spec["paths"]["/openapi.yaml"]["get"]["responses"]["200"]["content"]
        ["application/yaml"]["schema"];
    assert_eq!(served["type"], "object");
    let document: Value = serde_yaml_ng::from_str(&repository_spec()).unwrap();
    for key in served["required"].as_array().unwrap() {
        assert!(document.get(key.as_str().unwrap()).is_some(), "{key}");
    }
}

/// Issue 26: each kind's counts are documented with exactly the columns
/// the service counts by (`by`) and sums (`sum`), from its description.
#[test]
fn each_kinds_counts_name_the_columns_it_accepts() {
    use acctstream::core::kind::ColumnType;
    let spec: Value = serde_yaml_ng::from_str(&repository_spec()).unwrap();
    for kind in acctstream::kinds::REGISTRY.kinds() {
        for template in ["{period}", "{period}/{datetime}"] {
            let path = format!("{}/counts/{template}", kind.path);
            let parameters = spec["paths"][&path]["get"]["parameters"]
                .as_array()
                .unwrap_or_else(|| panic!("{path} is not documented"));
            let enumeration = |name: &str| -> Vec<String> {
                let parameter = parameters
                    .iter()
                    .find(|p| p["name"] == name)
                    .unwrap_or_else(|| panic!("{path} has no {name}"));
                let schema = &parameter["schema"];
                let values = if schema["type"] == "array" {
                    &schema["items"]["enum"]
                } else {
                    &schema["enum"]
                };
                values
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            };
            let by: Vec<String> = kind
                .columns
                .iter()
                .filter(|c| {
                    matches!(
                        c.ty,
                        ColumnType::Text
                            | ColumnType::Identity(_)
                            | ColumnType::Integer
                            | ColumnType::Boolean
                    )
                })
                .map(|c| c.json.to_owned())
                .collect();
            let sums: Vec<String> = kind
                .columns
                .iter()
                .filter(|c| c.ty == ColumnType::Integer)
                .map(|c| c.json.to_owned())
                .collect();
            assert_eq!(enumeration("by"), by, "{path}");
            assert_eq!(enumeration("sum"), sums, "{path}");
            // And every filter of the kind.
            for filter in kind.filters {
                let documented = parameters.iter().any(|p| {
                    p["$ref"]
                        .as_str()
                        .and_then(|r| r.rsplit('/').next())
                        .and_then(|name| spec["components"]["parameters"][name]["name"].as_str())
                        == Some(filter.param)
                });
                assert!(documented, "{path} lacks the filter {}", filter.param);
            }
        }
    }
}
