//! A kind is one entry (issue 22): a kind defined here, in the tests, with
//! its own table, registered through the same API as the built-in kinds,
//! gets windows in JSON, CSV and NDJSON with links, ingest, lookups by
//! pseudonym, retention, audit rows and its upkeep (data derived from its
//! rows, kept up to date by the background job and before retention),
//! without any change to `src/`.
//! ARCHITECTURE.md's "Adding a kind" follows what this test does.

use std::time::Duration;

use acctstream::{
    core::pseudonym::Pseudonymiser,
    core::{
        identity::{pseudonym_of, IdentityType},
        ingest::{FieldType, IngestField, IngestSchema, SqlType},
        kind::{
            ingest_fields, Column, ColumnType, Filter, FilterType, IngestRoute, Kind, TimeModel,
        },
        retention::{RetentionPolicy, Rule},
    },
    db::{
        audit::{run_writer, AuditSink},
        retention::RetentionOptions,
        upkeep::{Caught, Upkeep},
        DbError,
    },
    kinds::REGISTRY,
    registry::Entry,
};
use chrono::{Duration as Days, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{body_of, spawn_app_with, AppOptions, TestApp, WRITE_TOKEN};

/// The kind's table, as its migration would create it.
const TABLE: &str = "CREATE TABLE gadget_reading (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    measured_at timestamptz NOT NULL,
    gadget_mac  text        NOT NULL,
    reading     integer     NOT NULL,
    note        text,
    event_id    text CONSTRAINT gadget_reading_event_id_key UNIQUE
);
CREATE INDEX gadget_reading_measured_at_id ON gadget_reading (measured_at, id);
CREATE TABLE gadget_tally (readings bigint NOT NULL, last_id bigint NOT NULL);
INSERT INTO gadget_tally VALUES (0, 0);";

/// The columns, each ingested under its own name.
static COLUMNS: [Column; 4] = [
    Column::timestamp("measured_at").ingested(),
    Column::new(
        "gadget",
        "Pseudonymised Gadget",
        ColumnType::Identity(IdentityType::Mac),
        "gadget_mac",
    )
    .ingested(),
    Column::new("reading", "Reading", ColumnType::Integer, "reading::int8").ingest(
        SqlType::Int4,
        FieldType::Integer {
            min: i32::MIN as i64,
            max: i32::MAX as i64,
        },
    ),
    Column::new("note", "Note", ColumnType::Text, "note")
        .nullable()
        .ingested(),
];

static FILTERS: [Filter; 2] = [
    Filter {
        param: "gadget",
        column: "gadget_mac",
        ty: FilterType::Identity(IdentityType::Mac),
    },
    Filter {
        param: "reading",
        column: "reading",
        ty: FilterType::Integer,
    },
];

static FIELDS: [IngestField; 5] = ingest_fields(&COLUMNS, &[IngestField::event_id("event_id")]);

static INGEST: IngestSchema = IngestSchema::new("gadget_reading", &FIELDS).recording_identities();

static RETENTION: [Rule; 1] = [Rule::new(
    "gadget_readings",
    "gadget_reading",
    "measured_at",
    "id",
)];

static KIND: Kind = Kind {
    name: "gadget_readings",
    path: "/api/v1/statistics/gadget-readings",
    envelope: "gadgetReadings",
    file_name: "gadget-readings",
    schema: "GadgetReading",
    table: "gadget_reading",
    time: TimeModel::Instant {
        column: "measured_at",
    },
    columns: &COLUMNS,
    filters: &FILTERS,
    ingest: Some(IngestRoute {
        path: "/api/v1/gadget-readings",
        schema: &INGEST,
        openapi: "IngestGadgetReading",
    }),
    retention: &RETENTION,
    ..Kind::BASE
};

/// The kind's derived data: how many readings it ever had (kept by its
/// upkeep, like the usage rollups of authentication events).
#[derive(Debug)]
struct Tally;

impl Tally {
    /// Adds the readings after the last one counted, in one transaction
    /// that holds the tally's row (runners take turns).
    async fn tally(client: &mut tokio_postgres::Client) -> Result<Caught, DbError> {
        let started = std::time::Instant::now();
        let tx = client.transaction().await?;
        let last: i64 = tx
            .query_one("SELECT last_id FROM gadget_tally FOR UPDATE", &[])
            .await?
            .try_get(0)?;
        let row = tx
            .query_one(
                "SELECT count(*), coalesce(max(id), $1) FROM gadget_reading WHERE id > $1",
                &[&last],
            )
            .await?;
        let (rows, last): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        tx.execute(
            "UPDATE gadget_tally SET readings = readings + $1, last_id = $2",
            &[&rows, &last],
        )
        .await?;
        tx.commit().await?;
        Ok(Caught {
            rows: rows as u64,
            set_aside: 0,
            elapsed: started.elapsed(),
        })
    }
}

impl Upkeep for Tally {
    fn name(&self) -> &'static str {
        "gadget tally"
    }

    fn settle<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
        _key: &'a Pseudonymiser,
    ) -> BoxFuture<'a, Result<Caught, DbError>> {
        Box::pin(Tally::tally(client))
    }

    fn run<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
        _key: &'a Pseudonymiser,
    ) -> BoxFuture<'a, Result<Caught, DbError>> {
        Box::pin(Tally::tally(client))
    }
}

static TALLY: Tally = Tally;

/// The whole registration: one entry.
static ENTRY: Entry = Entry {
    upkeep: Some(&TALLY),
    ..Entry::of(&KIND)
};

/// The readings the kind's upkeep has counted.
async fn tally(app: &TestApp) -> i64 {
    app.db
        .query_one("SELECT readings FROM gadget_tally", &[])
        .await
        .unwrap()
        .get(0)
}

async fn app() -> TestApp {
    app_with(AppOptions::default()).await
}

async fn app_with(mut options: AppOptions) -> TestApp {
    let (sink, entries) = AuditSink::channel(1024);
    options.http.audit = Some(sink);
    options.kinds = REGISTRY.with(&ENTRY);
    let app = spawn_app_with(options).await;
    app.db.batch_execute(TABLE).await.unwrap();
    // What `migrate` makes for every registered kind: its change feed.
    let mut client = crate::helpers::connect(&crate::helpers::database_config(&app.db_name)).await;
    let tracked = acctstream::db::migrate::track_changes(&mut client, &[&KIND], false)
        .await
        .unwrap();
    assert_eq!(tracked, vec!["gadget_readings"]);
    actix_web::rt::spawn(run_writer(app.pool.clone(), entries));
    app
}

#[actix_web::test]
async fn a_kind_defined_in_a_test_gets_the_whole_pipeline_from_its_entry() {
    let app = app().await;
    let hour = Utc::now() - Days::hours(2);
    let hour_text = hour.format("%Y-%m-%dT%H").to_string();
    let at = |minute: u32| format!("{hour_text}:{minute:02}:00Z");
    let old = (Utc::now() - Days::days(400)).format("%Y-%m-%dT%H:%M:%SZ");

    // Ingest, as NDJSON, with the write token.
    let body = format!(
        "{{\"timestamp\":\"{}\",\"gadget\":\"AA-BB-CC-00-00-01\",\"reading\":7,\"eventId\":\"g1\"}}\n\
         {{\"timestamp\":\"{}\",\"gadget\":\"aa:bb:cc:00:00:02\",\"reading\":9,\"note\":\"=SUM(A1)\",\"eventId\":\"g2\"}}\n\
         {{\"timestamp\":\"{old}\",\"gadget\":\"aa:bb:cc:00:00:03\",\"reading\":1,\"eventId\":\"g3\"}}\n",
        at(10),
        at(20)
    );
    let mut response = app
        .client()
        .post(format!("{}/api/v1/gadget-readings", app.address))
        .insert_header(("Authorization", format!("Bearer {WRITE_TOKEN}")))
        .insert_header(("Content-Type", "application/x-ndjson"))
        .send_body(body.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"received": 3, "inserted": 3, "duplicates": 0})
    );
    // The same again: deduplicated by eventId.
    let mut again = app
        .client()
        .post(format!("{}/api/v1/gadget-readings", app.address))
        .insert_header(("Authorization", format!("Bearer {WRITE_TOKEN}")))
        .insert_header(("Content-Type", "application/x-ndjson"))
        .send_body(body)
        .await
        .unwrap();
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["duplicates"], 3);

    // A window in JSON: the records, pseudonymised, with links.
    let window = format!("/api/v1/statistics/gadget-readings/hour/{hour_text}");
    let mut response = app.get(&window).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let link = response
        .headers()
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(link.contains("rel=\"next\""), "{link}");
    let json: Value = response.json().await.unwrap();
    let first = pseudonym_of(&app.pseudonymiser, IdentityType::Mac, "aa:bb:cc:00:00:01");
    assert_eq!(
        json["gadgetReadings"].as_array().unwrap().len(),
        2,
        "{json}"
    );
    assert_eq!(json["gadgetReadings"][0]["gadget"], first.as_str());
    assert_eq!(json["gadgetReadings"][0]["reading"], 7);
    assert_eq!(json["gadgetReadings"][0]["note"], Value::Null);
    assert!(json["links"]["self"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/gadget-readings/hour/{hour_text}")));
    assert!(json["links"]["next"].as_str().is_some());
    assert!(!json.to_string().contains("aa:bb:cc"), "{json}");

    // Its counts (issue 26): per gadget, pseudonymised, with the sum of
    // the readings, from the kind's description alone.
    let mut response = app
        .get(&format!(
            "/api/v1/statistics/gadget-readings/counts/hour/{hour_text}?by=gadget&sum=reading"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let counts: Value = response.json().await.unwrap();
    let second = pseudonym_of(&app.pseudonymiser, IdentityType::Mac, "aa:bb:cc:00:00:02");
    assert_eq!(
        counts["counts"],
        serde_json::json!([
            {"key": second, "count": 1, "sums": {"reading": 9}},
            {"key": first, "count": 1, "sums": {"reading": 7}},
        ])
    );

    // CSV, with its header and the formula guard; NDJSON.
    let mut response = app
        .get(&window)
        .insert_header(("Accept", "text/csv"))
        .send()
        .await
        .unwrap();
    let disposition = response.headers().get("content-disposition").unwrap();
    assert!(disposition
        .to_str()
        .unwrap()
        .contains(&format!("gadget-readings-hour-{hour_text}")));
    let csv = String::from_utf8(body_of(&mut response).await).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "Timestamp,Pseudonymised Gadget,Reading,Note");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[2].ends_with(",9,'=SUM(A1)"), "{csv}");
    let mut response = app
        .get(&format!("{window}?format=ndjson"))
        .send()
        .await
        .unwrap();
    let ndjson = String::from_utf8(body_of(&mut response).await).unwrap();
    assert_eq!(ndjson.lines().count(), 2, "{ndjson}");

    // Filters: by pseudonym (through the identity directory), by value.
    let mut response = app
        .get(&format!("{window}?gadget={first}"))
        .send()
        .await
        .unwrap();
    let json: Value = response.json().await.unwrap();
    assert_eq!(
        json["gadgetReadings"].as_array().unwrap().len(),
        1,
        "{json}"
    );
    let mut response = app
        .get(&format!("{window}?reading=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_request");
    assert!(error["error_description"]
        .as_str()
        .unwrap()
        .contains("`reading`"));

    // Audit: the window requests are recorded under their route template,
    // the identity parameter as a pseudonym.
    let mut audited = Vec::new();
    for _ in 0..100 {
        audited = app
            .db
            .query(
                "SELECT route, parameters FROM access_audit WHERE route LIKE '%gadget-readings%' ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        if audited.len() >= 7 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let routes: Vec<String> = audited.iter().map(|r| r.get(0)).collect();
    assert!(
        routes.contains(&"/api/v1/gadget-readings".to_owned()),
        "{routes:?}"
    );
    assert!(
        routes.contains(&"/api/v1/statistics/gadget-readings/{period}/{datetime}".to_owned()),
        "{routes:?}"
    );
    let parameters: Vec<String> = audited.iter().map(|r| r.get(1)).collect();
    assert!(
        parameters
            .iter()
            .any(|p| p.contains(&format!("gadget={first}"))),
        "{parameters:?}"
    );

    // Its change feed: the three readings in commit order, each with its
    // position; a window points to it.
    assert!(
        link.contains("/api/v1/statistics/gadget-readings/changes?after=gadget_readings."),
        "{link}"
    );
    let feed = crate::changes::records_after(
        &app,
        "/api/v1/statistics/gadget-readings/changes",
        "gadgetReadings",
        3,
    )
    .await;
    assert_eq!(feed.len(), 3, "{feed:?}");
    assert_eq!(feed[0]["reading"], 7);
    assert_eq!(feed[0]["gadget"], first.as_str());
    let after_first = feed[0]["position"].as_str().unwrap().to_owned();
    let after_all = feed[2]["position"].as_str().unwrap().to_owned();

    // Retention brings the kind's upkeep up to date first (the tally counts
    // the old reading before it goes), runs the kind's rule, and the
    // directory forgets the gadget only the old reading carried.
    assert_eq!(tally(&app).await, 0);
    let options = RetentionOptions {
        policy: RetentionPolicy::new(180),
        upkeep: REGISTRY.with(&ENTRY).upkeeps(),
        pseudonymiser: Some(app.pseudonymiser.clone()),
        kinds: REGISTRY.with(&ENTRY).kinds(),
        ..RetentionOptions::default()
    };
    let cutoff = options.policy.cutoff(Utc::now()).unwrap();
    let outcome =
        acctstream::db::retention::purge(&app.pool, cutoff, &options, &CancellationToken::new())
            .await
            .unwrap();
    assert_eq!(outcome.deleted("gadget_readings"), 1, "{outcome:?}");
    assert_eq!(tally(&app).await, 3);
    assert_eq!(outcome.deleted("identity_directory"), 1, "{outcome:?}");
    let left: Vec<String> = app
        .db
        .query("SELECT raw FROM identity_directory ORDER BY raw", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec!["aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02"]);

    // Retention took the old reading, committed after the first one: a
    // cursor after the first may have missed it (410, with where to start
    // again); one after all three missed nothing.
    let feed = "/api/v1/statistics/gadget-readings/changes";
    let mut gone = app
        .get(&format!("{feed}?after={after_first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    let first_link = gone
        .headers()
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        first_link.ends_with(&format!("{feed}>; rel=\"first\"")),
        "{first_link}"
    );
    let error: Value = gone.json().await.unwrap();
    assert_eq!(error["error"], "gone");
    let kept = app
        .get(&format!("{feed}?after={after_all}"))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 200);
    let again = crate::changes::records_after(&app, feed, "gadgetReadings", 2).await;
    assert_eq!(again.len(), 2);
}

/// The application's background job runs the upkeep of every entry of its
/// registry, the test's kind among them.
#[actix_web::test]
async fn the_background_job_keeps_a_registered_kinds_upkeep() {
    let app = app_with(AppOptions {
        jobs: true,
        ..AppOptions::default()
    })
    .await;
    app.db
        .batch_execute(
            "INSERT INTO gadget_reading (measured_at, gadget_mac, reading) \
             VALUES (now(), 'aa:bb:cc:00:00:01', 1), (now(), 'aa:bb:cc:00:00:02', 2)",
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let readings = tally(&app).await;
        if readings == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upkeep job did not tally the readings: {readings}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Without its entry, the kind's routes do not exist: registration is the
/// only thing that makes a kind served.
#[actix_web::test]
async fn a_kind_not_registered_is_not_served() {
    let app = crate::helpers::spawn_app().await;
    let response = app
        .get("/api/v1/statistics/gadget-readings/hour")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
