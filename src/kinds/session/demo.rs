//! Demo network access sessions: the demo's users (the same raw user ids as
//! its authentication events, and the same devices as its Wi-Fi client
//! events, so pseudonyms join across kinds) on a few NAS: Wi-Fi
//! controllers, a VPN concentrator and access switches, with realistic
//! durations, volumes, interim updates, terminate causes and some stale
//! sessions. The seed writes through [`crate::kinds::session::store::apply`]; the
//! live trickle builds RADIUS accounting requests (half of them in
//! `rlm_rest`'s form) and sends them through the same parser and merge as
//! `POST /api/v1/accounting/radius`, so `online` changes while the demo runs.

use std::{collections::VecDeque, future::Future, net::IpAddr};

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::{
    radius::{self, default_unique_id, merge_requests, SessionRow, StatusType, Step},
    store as db_sessions,
};
use crate::core::pseudonym::Pseudonymiser;
use crate::demo::*;

/// Authentication events per demo session.
pub const EVENTS_PER_SESSION: u64 = 20;
/// Sessions written per transaction by the seed.
const BATCH: usize = 5_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum NasKind {
    Wifi,
    Vpn,
    Switch,
}

struct Nas {
    ip: &'static str,
    kind: NasKind,
    /// Share of the sessions.
    weight: u32,
}

const NAS: [Nas; 8] = [
    Nas {
        ip: "10.0.1.1",
        kind: NasKind::Wifi,
        weight: 30,
    },
    Nas {
        ip: "10.0.1.2",
        kind: NasKind::Wifi,
        weight: 25,
    },
    Nas {
        ip: "10.0.1.3",
        kind: NasKind::Wifi,
        weight: 15,
    },
    Nas {
        ip: "10.0.2.1",
        kind: NasKind::Vpn,
        weight: 12,
    },
    Nas {
        ip: "10.0.3.1",
        kind: NasKind::Switch,
        weight: 6,
    },
    Nas {
        ip: "10.0.3.2",
        kind: NasKind::Switch,
        weight: 5,
    },
    Nas {
        ip: "10.0.3.3",
        kind: NasKind::Switch,
        weight: 4,
    },
    Nas {
        ip: "10.0.3.4",
        kind: NasKind::Switch,
        weight: 3,
    },
];

/// One planned session.
struct Plan {
    user: usize,
    nas: usize,
    number: u64,
    start: DateTime<Utc>,
    length: Duration,
    interval: i64,
    /// The NAS stopped reporting it (it will read as stale).
    lost: bool,
    rate: i64,
    cause: &'static str,
}

/// The people, devices and NAS, and the random stream.
struct Generator {
    rng: StdRng,
    users: Vec<String>,
    user_cumulative: Vec<f64>,
    macs: Vec<String>,
    nas_cumulative: Vec<f64>,
    next_number: u64,
}

impl Generator {
    fn new(rng_seed: u64, users: u32, stream_seed: u64) -> Generator {
        let (users, user_cumulative) = crate::kinds::auth::demo::population(rng_seed, users);
        let total: u32 = NAS.iter().map(|n| n.weight).sum();
        let mut sum = 0.0;
        let nas_cumulative = NAS
            .iter()
            .map(|n| {
                sum += f64::from(n.weight) / f64::from(total);
                sum
            })
            .collect();
        Generator {
            rng: StdRng::seed_from_u64(stream_seed),
            users,
            user_cumulative,
            macs: crate::kinds::client::demo::client_macs(rng_seed),
            nas_cumulative,
            next_number: stream_seed % 1_000_000 * 1_000,
        }
    }

    /// Plans a session starting at `start`.
    fn plan(&mut self, start: DateTime<Utc>) -> Plan {
        let user = sample(&self.user_cumulative, &mut self.rng);
        let nas = sample(&self.nas_cumulative, &mut self.rng);
        let kind = NAS[nas].kind;
        // Log-normal lengths: Wi-Fi around an hour, VPN a working
        // afternoon, wired desks a working day.
        let (median_minutes, interval, causes): (f64, i64, &[(&str, u32)]) = match kind {
            NasKind::Wifi => (
                55.0,
                300,
                &[
                    ("User-Request", 40),
                    ("Idle-Timeout", 30),
                    ("Lost-Carrier", 20),
                    ("Session-Timeout", 10),
                ],
            ),
            NasKind::Vpn => (
                150.0,
                600,
                &[
                    ("User-Request", 70),
                    ("Idle-Timeout", 20),
                    ("Lost-Service", 10),
                ],
            ),
            NasKind::Switch => (
                420.0,
                600,
                &[
                    ("Lost-Carrier", 60),
                    ("User-Request", 30),
                    ("Admin-Reset", 10),
                ],
            ),
        };
        let normal: f64 = (0..6).map(|_| self.rng.gen::<f64>()).sum::<f64>() - 3.0;
        let minutes = (median_minutes * (0.9 * normal).exp()).clamp(1.0, 24.0 * 60.0);
        let total: u32 = causes.iter().map(|c| c.1).sum();
        let mut draw = self.rng.gen_range(0..total);
        let cause = causes
            .iter()
            .find(|c| {
                if draw < c.1 {
                    true
                } else {
                    draw -= c.1;
                    false
                }
            })
            .map_or("User-Request", |c| c.0);
        self.next_number += 1;
        Plan {
            user,
            nas,
            number: self.next_number,
            start,
            length: Duration::seconds((minutes * 60.0) as i64),
            interval,
            lost: self.rng.gen_range(0..100) == 0,
            // Bytes per second: a few kB/s idle to a few MB/s busy.
            rate: (2_000.0 * (2.0 * normal.abs() + 1.0).exp()) as i64,
            cause,
        }
    }

    fn device(&self, plan: &Plan) -> String {
        match NAS[plan.nas].kind {
            NasKind::Vpn => format!("203.0.113.{}", plan.user % 250 + 1),
            NasKind::Wifi => self.macs[plan.user % self.macs.len()]
                .to_uppercase()
                .replace(':', "-"),
            NasKind::Switch => {
                // Wired desks: the device's second interface.
                let mac = &self.macs[(plan.user + 1) % self.macs.len()];
                mac.replace(':', "")
            }
        }
    }

    /// The session as stored `now` (open, stale or closed).
    fn row(&self, plan: &Plan, now: DateTime<Utc>) -> SessionRow {
        let nas = &NAS[plan.nas];
        let end = plan.start + plan.length;
        let heard_until = if plan.lost {
            plan.start + Duration::seconds(plan.interval.min(plan.length.num_seconds()))
        } else {
            end.min(now)
        };
        let elapsed = (heard_until - plan.start).num_seconds().max(0);
        let last_interim = elapsed / plan.interval * plan.interval;
        let closed = !plan.lost && end <= now;
        let time = if closed { elapsed } else { last_interim };
        let octets = plan.rate * time;
        let user = &self.users[plan.user];
        let session_id = format!("{:08X}", plan.number);
        let port = format!("{}", plan.number % 48 + 1);
        SessionRow {
            unique_id: default_unique_id([user, &session_id, nas.ip, "", "", &port]),
            session_id,
            user: Some(user.clone()),
            realm: None,
            nas: nas.ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            nas_port_id: Some(port),
            nas_port_type: Some(
                match nas.kind {
                    NasKind::Wifi => "Wireless-802.11",
                    NasKind::Vpn => "Virtual",
                    NasKind::Switch => "Ethernet",
                }
                .to_owned(),
            ),
            start: plan.start,
            update: plan.start + Duration::seconds(time),
            stop: closed.then_some(end),
            interval: Some(plan.interval),
            session_time: Some(time),
            authentic: Some("RADIUS".to_owned()),
            connect_info_start: (nas.kind == NasKind::Wifi).then(|| "CONNECT 802.11ax".to_owned()),
            connect_info_stop: None,
            input_octets: octets / 5,
            output_octets: octets,
            called: Some(match nas.kind {
                NasKind::Wifi => format!(
                    "00-11-74-00-{:02X}-{:02X}:{}",
                    plan.nas,
                    plan.user % 200,
                    if plan.user.is_multiple_of(7) {
                        "Guest"
                    } else {
                        "Corp"
                    }
                ),
                NasKind::Vpn => "vpn.example.org".to_owned(),
                NasKind::Switch => format!("00-1B-54-00-00-{:02X}", plan.nas),
            }),
            calling: Some(self.device(plan)),
            terminate_cause: closed.then(|| plan.cause.to_owned()),
            service_type: Some("Framed-User".to_owned()),
            framed_protocol: (nas.kind == NasKind::Vpn).then(|| "PPP".to_owned()),
            framed_ip: Some(IpAddr::from([
                10,
                100 + plan.nas as u8,
                (plan.user / 250 % 250) as u8,
                (plan.user % 250 + 1) as u8,
            ])),
            framed_ipv6: None,
            framed_ipv6_prefix: None,
            framed_interface_id: None,
            delegated_ipv6_prefix: None,
            class: None,
            status: if closed {
                StatusType::Stop
            } else {
                StatusType::InterimUpdate
            },
            stop_without_time: false,
        }
    }
}

/// Writes `sessions` sessions starting over the `opts.days` days before
/// `opts.end` (the daily rhythm of the other kinds), as stored at
/// `opts.end`: most closed, the latest still open, about one in a hundred
/// stale. Identities go into the identity directory. Returns the rows written.
pub async fn seed(
    pool: &deadpool_postgres::Pool,
    pseudonymiser: &Pseudonymiser,
    opts: &SeedOptions,
    sessions: u64,
) -> Result<u64, DemoError> {
    if opts.days == 0 {
        return Err(DemoError::InvalidOptions(
            "days must be at least 1".to_owned(),
        ));
    }
    if sessions == 0 {
        return Ok(0);
    }
    let mut generator = Generator::new(opts.rng_seed, opts.users, opts.rng_seed.rotate_left(17));
    let (buckets, counts) = spread(opts, sessions, &mut generator.rng)?;
    let mut rows = Vec::with_capacity(BATCH);
    let mut written = 0;
    for (bucket, count) in buckets.iter().zip(counts) {
        for _ in 0..count {
            let t = bucket.start_us + generator.rng.gen_range(0..bucket.end_us - bucket.start_us);
            let start = DateTime::from_timestamp_micros(t).ok_or(DemoError::TimeOutOfRange(t))?;
            let planned = generator.plan(start);
            rows.push(generator.row(&planned, opts.end));
            if rows.len() == BATCH {
                written += write(pool, pseudonymiser, std::mem::take(&mut rows)).await?;
            }
        }
    }
    written += write(pool, pseudonymiser, rows).await?;
    Ok(written)
}

async fn write(
    pool: &deadpool_postgres::Pool,
    pseudonymiser: &Pseudonymiser,
    rows: Vec<SessionRow>,
) -> Result<u64, DemoError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len() as u64;
    db_sessions::apply(
        pool,
        pseudonymiser,
        &crate::db::directory::Recorded::default(),
        &[Step::Sessions(rows)],
        None,
    )
    .await?
    // A writer of every organization is never refused.
    .map_err(|m| DemoError::InvalidOptions(m.to_string()))?;
    Ok(n)
}

/// A session the trickle keeps alive.
struct Live {
    plan: Plan,
    next_interim: DateTime<Utc>,
}

/// An accounting request of `row` as a NAS would report it, plain or in
/// `rlm_rest`'s form.
fn request(
    row: &SessionRow,
    status: &str,
    at: DateTime<Utc>,
    rest_form: bool,
) -> Map<String, Value> {
    let mut attrs: Vec<(&str, Value)> = vec![
        ("Acct-Status-Type", json!(status)),
        ("Acct-Session-Id", json!(row.session_id)),
        ("NAS-IP-Address", json!(row.nas.to_string())),
        ("Event-Timestamp", json!(at.timestamp())),
        (
            "Acct-Session-Time",
            json!((at - row.start).num_seconds().max(0)),
        ),
        ("Acct-Input-Octets", json!(row.input_octets & 0xffff_ffff)),
        ("Acct-Input-Gigawords", json!(row.input_octets >> 32)),
        ("Acct-Output-Octets", json!(row.output_octets & 0xffff_ffff)),
        ("Acct-Output-Gigawords", json!(row.output_octets >> 32)),
        ("Acct-Interim-Interval", json!(row.interval)),
    ];
    for (name, value) in [
        ("User-Name", &row.user),
        ("NAS-Port-Id", &row.nas_port_id),
        ("NAS-Port-Type", &row.nas_port_type),
        ("Called-Station-Id", &row.called),
        ("Calling-Station-Id", &row.calling),
        ("Service-Type", &row.service_type),
        ("Acct-Authentic", &row.authentic),
        ("Framed-Protocol", &row.framed_protocol),
        ("Connect-Info", &row.connect_info_start),
    ] {
        if let Some(value) = value {
            attrs.push((name, json!(value)));
        }
    }
    if let Some(ip) = row.framed_ip {
        attrs.push(("Framed-IP-Address", json!(ip.to_string())));
    }
    if status == "Stop" {
        attrs.push(("Acct-Terminate-Cause", json!(row.terminate_cause)));
    }
    attrs
        .into_iter()
        .map(|(name, value)| {
            let value = if rest_form {
                json!({ "type": "string", "value": [value] })
            } else {
                value
            };
            (name.to_owned(), value)
        })
        .collect()
}

/// Keeps sessions starting, updating and stopping every two seconds until
/// `shutdown` resolves, through the RADIUS ingest's parser and merge. A
/// failed round is logged; 30 failures in a row end the trickle.
pub async fn trickle(
    pool: deadpool_postgres::Pool,
    pseudonymiser: Pseudonymiser,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DemoError> {
    let shutdown = std::pin::pin!(shutdown);
    let seed = Utc::now().timestamp_micros() as u64;
    let mut generator = Generator::new(DEFAULT_RNG_SEED, DEFAULT_USERS, seed.rotate_left(41));
    let mut live: VecDeque<Live> = VecDeque::new();
    let recorded = crate::db::directory::Recorded::default();
    let mut rounds = Rounds::new(
        std::time::Duration::from_secs(2),
        30,
        super::KIND.table,
        shutdown,
    );
    while rounds.next().await {
        let now = Utc::now();
        let mut requests = Vec::new();
        // New sessions: about one per second at the busiest hour.
        let starts = (trickle_rate(now.timestamp_micros()) / 15.0
            * generator.rng.gen_range(0.5..1.5))
        .round()
        .max(1.0) as usize;
        for _ in 0..starts {
            let mut plan = generator.plan(now);
            // Short demo sessions, so stops are seen too.
            plan.length = Duration::seconds(generator.rng.gen_range(60..1_800));
            plan.interval = 60;
            plan.lost = false;
            let row = generator.row(&plan, now);
            let rest_form = generator.rng.gen_bool(0.5);
            requests.push(Value::Object(request(&row, "Start", now, rest_form)));
            live.push_back(Live {
                next_interim: now + Duration::seconds(plan.interval),
                plan,
            });
        }
        let mut still = VecDeque::with_capacity(live.len());
        while let Some(mut session) = live.pop_front() {
            let end = session.plan.start + session.plan.length;
            let rest_form = session.plan.number % 2 == 0;
            if end <= now {
                let row = generator.row(&session.plan, now);
                requests.push(Value::Object(request(&row, "Stop", end, rest_form)));
            } else {
                if session.next_interim <= now {
                    let row = generator.row(&session.plan, now);
                    requests.push(Value::Object(request(
                        &row,
                        "Interim-Update",
                        now,
                        rest_form,
                    )));
                    session.next_interim = now + Duration::seconds(session.plan.interval);
                }
                still.push_back(session);
            }
        }
        live = still;
        // Read back as the ingest endpoint reads a posted batch.
        let body = Value::Array(requests).to_string();
        let parsed: Result<Vec<_>, String> = match radius::parse_body(body.as_bytes(), false) {
            Ok(radius::Body::Batch(objects)) => objects
                .iter()
                .map(|(_, object)| {
                    radius::parse_request(object, now)
                        .map(|(request, _)| request)
                        .map_err(|e| e.to_string())
                })
                .collect(),
            Ok(radius::Body::Single(_)) | Err(radius::BodyError::Empty) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        };
        let outcome = match parsed {
            Ok(parsed) => {
                let steps = merge_requests(parsed);
                db_sessions::apply(&pool, &pseudonymiser, &recorded, &steps, None)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Err(rejection) => Err(rejection),
        };
        rounds.record(outcome)?;
    }
    Ok(())
}
/// The demo of network access sessions (the registry entry's `demo`): one
/// per [`EVENTS_PER_SESSION`] authentication events of the demo's size,
/// seeded once; the trickle starts, updates and stops sessions through the
/// RADIUS ingest path, so `online` changes live.
pub struct SessionDemo;

/// The demo NAS's networks mapped to the demo's organizations (rules an
/// operator may have changed are kept).
async fn map_organizations(fill: &Fill<'_>) -> Result<(), DemoError> {
    let client = fill.client().await?;
    for (position, network, organization) in crate::demo::SESSION_RULES {
        client
            .execute(
                "INSERT INTO acctstream_session_tenant (position, nas, tenant) \
                 VALUES ($1, $2::text::cidr, $3) ON CONFLICT (position) DO NOTHING",
                &[&position, &network, &organization],
            )
            .await
            .map_err(crate::demo::db_err("mapping the demo NAS to organizations"))?;
    }
    Ok(())
}

impl Demo for SessionDemo {
    fn rows(&self, options: &SeedOptions) -> u64 {
        options.events / EVENTS_PER_SESSION
    }

    fn seed<'a>(&'a self, fill: &'a Fill<'a>, rows: u64) -> Written<'a> {
        Box::pin(async move {
            map_organizations(fill).await?;
            seed(fill.pool, fill.key()?, fill.options, rows).await
        })
    }

    fn top_up<'a>(&'a self, fill: &'a Fill<'a>) -> Written<'a> {
        Box::pin(async move {
            map_organizations(fill).await?;
            Ok(0)
        })
    }

    fn trickle(
        &self,
        pool: deadpool_postgres::Pool,
        pseudonymiser: Pseudonymiser,
        stop: futures_util::future::BoxFuture<'static, ()>,
    ) -> Trickle {
        Box::pin(trickle(pool, pseudonymiser, stop))
    }
}
