//! Interoperation with a real FreeRADIUS 3.2 server (Debian's `freeradius`,
//! `freeradius-postgresql`, `freeradius-rest`, `freeradius-utils`): the same
//! `radclient` packet sequence is sent once to a FreeRADIUS whose `rlm_sql`
//! writes `radacct` into one test database, and once to a FreeRADIUS whose
//! `rlm_rest` posts each request to acctstream (configured exactly as the
//! README shows), which writes another. Every packet must get an
//! Accounting-Response, both tables must hold the same sessions (an empty
//! string ≡ null, `rlm_sql`'s escapes undone), and the API must serve both
//! identically, with equal pseudonyms. Every process the test starts is
//! killed when it ends, whatever happens.

use std::{
    io::Read,
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::helpers::{
    body_of, cluster_socket, fresh_database, spawn_app_on, AppOptions, TestApp, TOKEN, WRITE_TOKEN,
};

const SECRET: &str = "testing123";

/// Start, interim with gigawords, stop; a session left open with a
/// non-ASCII user name that rlm_sql escapes; a session of another NAS that
/// Accounting-On closes.
const PACKETS: &str = r#"Acct-Status-Type = Start
Acct-Session-Id = "S-1"
User-Name = "alice"
NAS-IP-Address = 10.0.0.1
NAS-Port = 1
NAS-Port-Type = Wireless-802.11
Service-Type = Framed-User
Acct-Authentic = RADIUS
Calling-Station-Id = "68-05-71-A4-EF-0E"
Called-Station-Id = "00-11-22-33-44-55:Corp"
Framed-IP-Address = 192.0.2.10
Connect-Info = "CONNECT 802.11ax"
Event-Timestamp = 1795132800

Acct-Status-Type = Interim-Update
Acct-Session-Id = "S-1"
User-Name = "alice"
NAS-IP-Address = 10.0.0.1
NAS-Port = 1
NAS-Port-Type = Wireless-802.11
Calling-Station-Id = "68-05-71-A4-EF-0E"
Called-Station-Id = "00-11-22-33-44-55:Corp"
Framed-IP-Address = 192.0.2.10
Acct-Session-Time = 300
Acct-Input-Octets = 1000
Acct-Input-Gigawords = 2
Acct-Output-Octets = 500
Acct-Output-Gigawords = 1
Event-Timestamp = 1795133100

Acct-Status-Type = Stop
Acct-Session-Id = "S-1"
User-Name = "alice"
NAS-IP-Address = 10.0.0.1
NAS-Port = 1
NAS-Port-Type = Wireless-802.11
Calling-Station-Id = "68-05-71-A4-EF-0E"
Called-Station-Id = "00-11-22-33-44-55:Corp"
Framed-IP-Address = 192.0.2.10
Acct-Session-Time = 600
Acct-Input-Octets = 2000
Acct-Input-Gigawords = 2
Acct-Output-Octets = 900
Acct-Output-Gigawords = 1
Acct-Terminate-Cause = User-Request
Event-Timestamp = 1795133400

Acct-Status-Type = Start
Acct-Session-Id = "S-2"
User-Name = "josé+o'neil@x"
NAS-IP-Address = 10.0.0.1
NAS-Port = 2
Calling-Station-Id = "AA-BB-CC-DD-EE-FF"
Event-Timestamp = 1795133000

Acct-Status-Type = Start
Acct-Session-Id = "S-3"
User-Name = "bob"
NAS-IP-Address = 10.0.0.2
NAS-Port = 3
Event-Timestamp = 1795133000

Acct-Status-Type = Accounting-On
NAS-IP-Address = 10.0.0.2
Event-Timestamp = 1795133500
"#;

/// Number of requests in [`PACKETS`].
const REQUESTS: usize = 6;

/// A child process killed (and reaped) when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require(program: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(program);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "this test needs FreeRADIUS's `{program}`: install it with \
         `apt-get install freeradius freeradius-postgresql freeradius-rest freeradius-utils` \
         (package {package})"
    );
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// `radiusd.conf` of a minimal server: one client, one accounting listener,
/// `acct_unique` in preacct, and `accounting` as given.
fn radiusd_conf(dir: &Path, port: u16, modules: &str, accounting: &str) -> String {
    format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddbdir = {dir}
confdir = ${{raddbdir}}
logdir = ${{raddbdir}}/log
radacctdir = ${{logdir}}/radacct
run_dir = ${{raddbdir}}/run
db_dir = ${{raddbdir}}
modconfdir = /etc/freeradius/3.0/mods-config
libdir = /usr/lib/freeradius
pidfile = ${{run_dir}}/radiusd.pid
name = freeradius
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
    destination = stdout
    colourise = no
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
thread pool {{
    start_servers = 2
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 3
    max_requests_per_server = 0
}}
client localhost {{
    ipaddr = 127.0.0.1
    secret = {SECRET}
}}
modules {{
    expr {{
    }}
    always ok {{
        rcode = ok
    }}
{modules}
}}
policy {{
    $INCLUDE /etc/freeradius/3.0/policy.d/accounting
}}
server default {{
    listen {{
        type = acct
        ipaddr = 127.0.0.1
        port = {port}
    }}
    preacct {{
        acct_unique
    }}
    accounting {{
{accounting}
    }}
}}
"#,
        dir = dir.display()
    )
}

const POOL: &str = "        pool {
            start = 1
            min = 1
            max = 2
            spare = 1
            uses = 0
            retry_delay = 1
            lifetime = 0
            idle_timeout = 60
        }";

/// Starts `freeradius -f` on a private configuration; waits until it listens.
fn start_freeradius(dir: &Path, conf: &str) -> Running {
    let freeradius = require("freeradius", "freeradius");
    for sub in ["run", "log"] {
        std::fs::create_dir_all(dir.join(sub)).expect("config directories");
    }
    std::fs::write(
        dir.join("dictionary"),
        "$INCLUDE /usr/share/freeradius/dictionary\n",
    )
    .expect("dictionary");
    std::fs::write(dir.join("radiusd.conf"), conf).expect("radiusd.conf");
    let log = dir.join("radiusd.out");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(freeradius)
        .args(["-f", "-X", "-d"])
        .arg(dir)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("start freeradius");
    let mut running = Running { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&running.log).unwrap_or_default();
        if text.contains("Ready to process requests") {
            return running;
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!("freeradius exited ({status}) before it was ready:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "freeradius did not become ready in 20 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends [`PACKETS`] once, one request at a time; returns how many
/// Accounting-Responses came back.
fn send_packets(dir: &Path, port: u16) -> usize {
    let radclient = require("radclient", "freeradius-utils");
    let file = dir.join("packets.txt");
    std::fs::write(&file, PACKETS).expect("packets");
    let mut responses = 0;
    {
        let mut child = Command::new(&radclient)
            .args(["-p", "1", "-r", "3", "-t", "3", "-f"])
            .arg(&file)
            .arg(format!("127.0.0.1:{port}"))
            .args(["acct", SECRET])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run radclient");
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        let _ = child.wait();
        responses += out.matches("Received Accounting-Response").count();
    }
    responses
}

/// The sessions of a database in a comparable form: every column but
/// `radacctid`, empty strings as null, user names with rlm_sql's escapes
/// undone, ordered by session id.
async fn sessions_of(db: &tokio_postgres::Client) -> Vec<Value> {
    let rows = db
        .query(
            "SELECT (to_jsonb(r) - 'radacctid')::text FROM radacct r ORDER BY acctsessionid",
            &[],
        )
        .await
        .expect("read radacct");
    rows.iter()
        .map(|row| {
            let mut value: Value = serde_json::from_str(row.get(0)).expect("JSON row");
            for (key, field) in value.as_object_mut().expect("object").iter_mut() {
                if field.as_str() == Some("") {
                    *field = Value::Null;
                }
                if key == "username" {
                    if let Some(name) = field.as_str() {
                        *field = Value::String(
                            acctstream::core::identity::rlm_sql_unescape(name).into_owned(),
                        );
                    }
                }
            }
            value
        })
        .collect()
}

async fn window(app: &TestApp) -> Vec<Value> {
    let mut response = app
        .get("/api/v1/statistics/sessions/day/2026-11-20")
        .send()
        .await
        .expect("request");
    let body: Value = serde_json::from_slice(&body_of(&mut response).await).expect("JSON");
    assert_eq!(response.status(), 200, "{body}");
    body["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.as_object_mut().expect("object").remove("radAcctId");
            s
        })
        .collect()
}

/// An `rlm_sql` module writing `radacct` of database `name` in the test
/// cluster, with the queries of the file `queries`.
fn sql_module(name: &str, queries: &str) -> String {
    let (socket, pg_port) = cluster_socket();
    format!(
        r#"    sql {{
        driver = "rlm_sql_postgresql"
        dialect = "postgresql"
        server = "{socket}"
        port = {pg_port}
        login = "{user}"
        password = ""
        radius_db = "{name}"
        acct_table1 = "radacct"
        acct_table2 = "radacct"
        postauth_table = "radpostauth"
        authcheck_table = "radcheck"
        groupcheck_table = "radgroupcheck"
        authreply_table = "radreply"
        groupreply_table = "radgroupreply"
        usergroup_table = "radusergroup"
        read_groups = no
        read_clients = no
        client_table = "nas"
        group_attribute = "SQL-Group"
{POOL}
        $INCLUDE {queries}
    }}"#,
        socket = socket.display(),
        user = acctstream::db::embedded::SUPERUSER,
    )
}

#[actix_web::test]
async fn rlm_sql_and_rlm_rest_through_acctstream_give_the_same_sessions() {
    let _ = TOKEN;

    // rlm_sql writes radacct of one database.
    let (sql_name, sql_config) = fresh_database().await;
    let sql_app = spawn_app_on(sql_name.clone(), sql_config, AppOptions::default()).await;
    let sql_dir = tempfile::tempdir().expect("temp dir");
    let sql_port = free_udp_port();
    let sql_module = sql_module(&sql_name, "${modconfdir}/sql/main/postgresql/queries.conf");
    // As in FreeRADIUS's default site, a module after `sql` answers ok, so
    // that requests rlm_sql finds nothing to do for (a replayed Interim-Update
    // or Stop of a closed session: `noop`) are still acknowledged.
    let conf = radiusd_conf(
        sql_dir.path(),
        sql_port,
        &sql_module,
        "        sql\n        ok",
    );
    let sql_server = start_freeradius(sql_dir.path(), &conf);

    // rlm_rest posts every request to acctstream, configured as the README says.
    let (rest_name, rest_config) = fresh_database().await;
    let rest_app = spawn_app_on(rest_name, rest_config, AppOptions::default()).await;
    let rest_dir = tempfile::tempdir().expect("temp dir");
    let rest_port = free_udp_port();
    let rest_module = format!(
        r#"    rest {{
        connect_uri = "http://127.0.0.1:{port}"
        accounting {{
            uri = "${{..connect_uri}}/api/v1/accounting/radius"
            method = 'post'
            body = 'json'
        }}
{POOL}
    }}"#,
        port = rest_app.port
    );
    let accounting = format!(
        "        update control {{\n            &REST-HTTP-Header += \"Authorization: Bearer {WRITE_TOKEN}\"\n        }}\n        rest"
    );
    let conf = radiusd_conf(rest_dir.path(), rest_port, &rest_module, &accounting);
    let rest_server = start_freeradius(rest_dir.path(), &conf);

    // The sequence, once: every request answered, the same sessions in both
    // tables.
    let log = |server: &Running| std::fs::read_to_string(&server.log).unwrap_or_default();
    let answered = send_packets(sql_dir.path(), sql_port);
    assert_eq!(
        answered,
        REQUESTS,
        "rlm_sql server log:\n{}",
        log(&sql_server)
    );
    let answered = send_packets(rest_dir.path(), rest_port);
    assert_eq!(
        answered,
        REQUESTS,
        "rlm_rest server log:\n{}",
        log(&rest_server)
    );
    // rlm_rest sends Event-Timestamp as date text ("Nov 20 2026 00:00:00
    // UTC"): the equal start and stop times below show it was read right.
    assert!(log(&rest_server).contains("rest: Encoding attribute \"Event-Timestamp\""));
    let sql_rows = sessions_of(&sql_app.db).await;
    let rest_rows = sessions_of(&rest_app.db).await;
    assert_eq!(sql_rows.len(), 3);
    assert_eq!(rest_rows, sql_rows);
    let raw: Vec<String> = sql_app
        .db
        .query("SELECT username FROM radacct ORDER BY acctsessionid", &[])
        .await
        .expect("usernames")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        raw[1], "josé=2Bo=27neil@x",
        "rlm_sql stores the name escaped"
    );
    let s1 = &sql_rows[0];
    assert_eq!(s1["acctinputoctets"], (2i64 << 32) + 2000);
    assert_eq!(s1["acctoutputoctets"], (1i64 << 32) + 900);
    assert_eq!(sql_rows[2]["acctterminatecause"], "NAS-Reboot");
    assert!(sql_rows[1]["acctstoptime"].is_null(), "S-2 stays open");

    // The API serves both identically, with equal pseudonyms.
    let from_sql = window(&sql_app).await;
    let from_rest = window(&rest_app).await;
    assert_eq!(from_sql.len(), 3);
    assert_eq!(from_rest, from_sql);
    assert_eq!(from_sql[1]["userName"], sql_app.pseudonym("josé+o'neil@x"));
    // What rlm_sql wrote itself is in the change feed too (the trigger on
    // the radacct acctstream created), each session in its last state.
    let feed = crate::changes::records_after(
        &sql_app,
        "/api/v1/statistics/sessions/changes",
        "sessions",
        3,
    )
    .await;
    let mut fed: Vec<(String, String)> = feed
        .iter()
        .map(|s| {
            (
                s["acctSessionId"].as_str().unwrap_or_default().to_owned(),
                s["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    fed.sort();
    assert_eq!(fed.len(), 3, "{feed:?}");
    assert_eq!(fed[0], ("S-1".to_owned(), "closed".to_owned()));
    assert_eq!(fed[2], ("S-3".to_owned(), "closed".to_owned()));
    assert_eq!(
        from_sql[0]["callingStationId"],
        sql_app.pseudonym("68:05:71:a4:ef:0e")
    );

    // The whole sequence replayed: still every request answered. Through
    // acctstream nothing changes. rlm_sql's own queries, replaying the Start
    // of a closed session, fall through to their last query, which sets its
    // update time back to the Start's (here S-3, closed by Accounting-On):
    // the one difference, and why acctstream's merge never moves times
    // backwards.
    let answered = send_packets(sql_dir.path(), sql_port);
    assert_eq!(
        answered,
        REQUESTS,
        "rlm_sql server log:\n{}",
        log(&sql_server)
    );
    let answered = send_packets(rest_dir.path(), rest_port);
    assert_eq!(
        answered,
        REQUESTS,
        "rlm_rest server log:\n{}",
        log(&rest_server)
    );
    drop(sql_server);
    drop(rest_server);
    assert_eq!(
        sessions_of(&rest_app.db).await,
        rest_rows,
        "a replay changes nothing"
    );
    let mut sql_replayed = sessions_of(&sql_app.db).await;
    assert_eq!(
        sql_replayed[2]["acctupdatetime"], sql_replayed[2]["acctstarttime"],
        "FreeRADIUS 3.2's replayed Start rewrites a closed session's update time"
    );
    sql_replayed[2]["acctupdatetime"] = sql_rows[2]["acctupdatetime"].clone();
    assert_eq!(sql_replayed, sql_rows, "and nothing else");
}

/// FreeRADIUS's `queries.conf` changed for a `radacct` partitioned by
/// time, as docs/scaling.md says: a unique constraint there includes the
/// start time, so `ON CONFLICT (AcctUniqueId)` names none, and one naming
/// both columns lets a replayed Interim-Update or Stop of a closed session
/// (inserted with another start time) make a second row. Each of the three
/// inserts becomes a `SELECT` of its values `WHERE NOT EXISTS` a row of
/// that `AcctUniqueId`, `ON CONFLICT DO NOTHING`; when it inserts nothing,
/// rlm_sql runs the section's next query (the Start's `UPDATE` does what
/// its `DO UPDATE` did).
fn for_partitioned(stock: &str) -> String {
    const CONFLICT: &str = "ON CONFLICT (AcctUniqueId)";
    let mut out = String::new();
    let mut rest = stock;
    while let Some(at) = rest.find(CONFLICT) {
        let (before, after) = rest.split_at(at);
        let values = before.rfind("VALUES(\\").expect("the insert's VALUES");
        let close = before.rfind(')').expect("the end of its values");
        let end = after.find('"').expect("the end of the query");
        out.push_str(&before[..values]);
        out.push_str("SELECT \\");
        out.push_str(&before[values + "VALUES(\\".len()..close]);
        out.push_str(
            " \\\n\t\t\t\tWHERE NOT EXISTS (SELECT 1 FROM ${....acct_table1} \\\n\t\t\t\t\t\
             WHERE AcctUniqueId = '%{Acct-Unique-Session-Id}') \\\n\t\t\t\tON CONFLICT DO NOTHING",
        );
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// FreeRADIUS writing a `radacct` partitioned by time, with its queries
/// changed as docs/scaling.md says ([`for_partitioned`]): every request is
/// answered, a replay adds no row, and acctstream serves the sessions.
#[actix_web::test]
async fn rlm_sql_writes_a_partitioned_radacct_with_the_documented_queries() {
    let (name, config) = crate::helpers::fresh_database_unmigrated().await;
    let db = crate::helpers::connect(&config).await;
    db.batch_execute(crate::sessions::PARTITIONED_RADACCT)
        .await
        .expect("partitioned radacct");
    let mut client = crate::helpers::connect(&config).await;
    acctstream::db::migrate::run(&mut client, &acctstream::kinds::REGISTRY.kinds())
        .await
        .expect("migrate");
    let app = spawn_app_on(name.clone(), config, AppOptions::default()).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let stock =
        std::fs::read_to_string("/etc/freeradius/3.0/mods-config/sql/main/postgresql/queries.conf")
            .expect("FreeRADIUS's queries.conf (apt-get install freeradius-postgresql)");
    assert_eq!(
        stock.matches("ON CONFLICT (AcctUniqueId)").count(),
        3,
        "the three inserts docs/scaling.md changes"
    );
    let changed = for_partitioned(&stock);
    assert_eq!(changed.matches("WHERE NOT EXISTS").count(), 3);
    assert!(!changed.contains("ON CONFLICT (AcctUniqueId)"));
    let queries = dir.path().join("queries.conf");
    std::fs::write(&queries, changed).expect("queries.conf");
    let port = free_udp_port();
    let module = sql_module(&name, &queries.display().to_string());
    let conf = radiusd_conf(dir.path(), port, &module, "        sql\n        ok");
    let server = start_freeradius(dir.path(), &conf);
    for round in 0..2 {
        let answered = send_packets(dir.path(), port);
        assert_eq!(
            answered,
            REQUESTS,
            "round {round}, server log:\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
    }
    drop(server);
    let rows = sessions_of(&app.db).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["acctinputoctets"], (2i64 << 32) + 2000);
    assert!(rows[1]["acctstoptime"].is_null(), "S-2 stays open");
    assert_eq!(rows[2]["acctterminatecause"], "NAS-Reboot");
    let served = window(&app).await;
    assert_eq!(served.len(), 3);
    assert_eq!(served[1]["userName"], app.pseudonym("josé+o'neil@x"));
}
