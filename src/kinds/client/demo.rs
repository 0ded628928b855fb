//! Demo Wi-Fi client connectivity events: a few hundred APs in six buildings
//! over five SSIDs, thousands of clients, mostly successful connections,
//! failures with realistic reasons (wrong passphrase, 802.1X timeout, DHCP
//! failure, ...) concentrated on a few troubled APs, and intermediate events
//! around roams. Follows the same daily rhythm as the authentication events.

use std::future::Future;

use crate::core::{
    identity::IdentityType,
    ingest::{IngestSchema, Record, Value, MAX_FIELDS},
    pseudonym::Pseudonymiser,
};
use crate::db::directory::Entries;
use crate::demo::*;
use crate::kinds::client::INGEST;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Client events per authentication event in the default demo data.
pub const EVENTS_PER_AUTH_EVENT: u64 = 4;
/// Distinct client devices.
const CLIENTS: usize = 6_000;
/// Buildings × floors × APs per floor.
const BUILDINGS: usize = 6;
const FLOORS: usize = 4;
const APS_PER_FLOOR: usize = 10;
/// APs that get most failures (indices into the AP list).
const TROUBLED_APS: [usize; 6] = [7, 31, 58, 101, 150, 203];
/// The share of failures that happen on a troubled AP.
const TROUBLED_SHARE: f64 = 0.6;
/// SSIDs with their relative popularity.
const SSIDS: [(&str, u32); 5] = [
    ("Corp", 50),
    ("eduroam", 15),
    ("Corp-Guest", 20),
    ("IoT", 10),
    ("Lab-5G", 5),
];
const PROTOCOLS: [&str; 5] = ["AX", "AC", "N", "BG", "A"];
const CHANNELS: [i32; 11] = [1, 6, 11, 36, 40, 44, 48, 149, 153, 157, 161];
/// (failureCode, failure, subFailureCode, subFailure, relative weight).
const FAILURES: [(i32, &str, i32, &str, u32); 6] = [
    (7, "Incorrect PSK", 14, "Wrong passphrase.", 30),
    (
        3,
        "802.1X Failure",
        5,
        "EAP timeout: no response from the client.",
        25,
    ),
    (
        3,
        "802.1X Failure",
        6,
        "RADIUS rejected the credentials.",
        8,
    ),
    (4, "DHCP Failure", 8, "No DHCP offer received.", 20),
    (2, "Association Failure", 3, "AP capacity reached.", 10),
    (5, "AAA Failure", 9, "RADIUS server unreachable.", 7),
];
/// (categoryCode, category, typeCode, eventDescription, subTypeCode, subEventDescription).
const INTERMEDIATE: [(i32, &str, i32, &str, i32, &str); 5] = [
    (
        1,
        "Association",
        10,
        "Reassociation request",
        1,
        "Client roamed from another AP",
    ),
    (
        2,
        "Authentication",
        20,
        "802.1X authentication started",
        0,
        "",
    ),
    (3, "Network", 30, "IP address assigned", 0, ""),
    (
        4,
        "Client Steering",
        40,
        "Steered to a better AP",
        2,
        "Band steering to 5 GHz",
    ),
    (5, "Quarantine", 50, "Client quarantined", 0, ""),
];

struct Ap {
    name: String,
    bssid: String,
    channel: i32,
}

struct Client {
    mac: String,
    ip: String,
    protocol: &'static str,
    ssid: usize,
}

/// One generated event, its optional fields `None` where its type has none.
#[derive(Default)]
struct Row {
    occurred_at: Option<DateTime<Utc>>,
    client: usize,
    event_type: &'static str,
    ap: usize,
    intermediate: Option<usize>,
    vlan: Option<i32>,
    with_ip: bool,
    rssi: Option<i32>,
    stamps: Option<(i64, i64, i64)>,
    failure: Option<usize>,
    latencies: Option<(i32, i32, i32)>,
}

/// The population of APs and clients, and the random stream drawing events.
struct Generator {
    rng: StdRng,
    aps: Vec<Ap>,
    ap_cumulative: Vec<f64>,
    clients: Vec<Client>,
    client_cumulative: Vec<f64>,
    failure_cumulative: Vec<f64>,
}

fn cumulative(weights: impl Iterator<Item = u32>) -> Vec<f64> {
    let weights: Vec<f64> = weights.map(f64::from).collect();
    let total: f64 = weights.iter().sum();
    let mut sum = 0.0;
    weights
        .iter()
        .map(|w| {
            sum += w / total;
            sum
        })
        .collect()
}

/// The MAC addresses of the Wi-Fi clients of `rng_seed`, so other kinds'
/// demo devices are the same devices.
pub(crate) fn client_macs(rng_seed: u64) -> Vec<String> {
    Generator::new(rng_seed, 0)
        .clients
        .into_iter()
        .map(|c| c.mac)
        .collect()
}

impl Generator {
    fn new(population_seed: u64, event_seed: u64) -> Generator {
        let mut rng = StdRng::seed_from_u64(population_seed ^ 0x005e_edc1_1ea7);
        let mut aps = Vec::new();
        for b in 1..=BUILDINGS {
            for f in 1..=FLOORS {
                for n in 1..=APS_PER_FLOOR {
                    let i = aps.len();
                    aps.push(Ap {
                        name: format!("AP-B{b}-F{f}-{n:02}"),
                        bssid: format!("00:11:74:{:02x}:{:02x}:{:02x}", b * 16 + f, n, i % 256),
                        channel: CHANNELS[rng.gen_range(0..CHANNELS.len())],
                    });
                }
            }
        }
        let ssid_cumulative = cumulative(SSIDS.iter().map(|s| s.1));
        let clients = (0..CLIENTS)
            .map(|i| {
                let oui: [u8; 3] = match i % 4 {
                    0 => [0x68, 0x05, 0x71],
                    1 => [0xa4, 0x83, 0xe7],
                    2 => [0x3c, 0x22, 0xfb],
                    _ => [0xf0, 0x18, 0x98],
                };
                let tail: u32 = rng.gen_range(0..0x00ff_ffff);
                Client {
                    mac: format!(
                        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                        oui[0],
                        oui[1],
                        oui[2],
                        tail >> 16,
                        (tail >> 8) & 0xff,
                        tail & 0xff
                    ),
                    ip: format!("10.{}.{}.{}", 20 + (i >> 16), (i >> 8) & 0xff, i & 0xff),
                    protocol: PROTOCOLS[rng.gen_range(0..PROTOCOLS.len())],
                    ssid: sample(&ssid_cumulative, &mut rng),
                }
            })
            .collect();
        Generator {
            rng: StdRng::seed_from_u64(event_seed),
            ap_cumulative: zipf_cumulative(aps.len(), 0.6),
            aps,
            clients,
            client_cumulative: zipf_cumulative(CLIENTS, 0.8),
            failure_cumulative: cumulative(FAILURES.iter().map(|f| f.4)),
        }
    }

    /// Records every client's MAC and IP address in the identity
    /// directory, as seen at `seen` (the end of the data generated).
    fn directory(&self, pseudonymiser: &Pseudonymiser, seen: DateTime<Utc>) -> Entries {
        let mut entries = Entries::default();
        for client in &self.clients {
            entries.add(pseudonymiser, IdentityType::Mac, &client.mac, seen);
            entries.add(pseudonymiser, IdentityType::Ip, &client.ip, seen);
        }
        entries
    }

    fn draw(&mut self, occurred_at: DateTime<Utc>) -> Row {
        let rng = &mut self.rng;
        let client = sample(&self.client_cumulative, rng);
        let roll: f64 = rng.gen();
        let ms = occurred_at.timestamp_millis();
        let mut row = Row {
            occurred_at: Some(occurred_at),
            client,
            ap: sample(&self.ap_cumulative, rng),
            ..Row::default()
        };
        if roll < 0.82 {
            row.event_type = "Success";
            let assoc = ms - rng.gen_range(500..3_000);
            row.stamps = Some((assoc, assoc + rng.gen_range(50..800), ms));
            row.latencies = Some((
                rng.gen_range(1..8),
                rng.gen_range(0..3),
                rng.gen_range(5..120),
            ));
        } else if roll < 0.92 {
            row.event_type = "Failure";
            if rng.gen_bool(TROUBLED_SHARE) {
                row.ap = TROUBLED_APS[rng.gen_range(0..TROUBLED_APS.len())];
            }
            let assoc = ms - rng.gen_range(500..5_000);
            row.stamps = Some((assoc, assoc + rng.gen_range(50..800), ms));
            row.failure = Some(sample(&self.failure_cumulative, rng));
        } else {
            row.event_type = "Intermediate";
            let kind = if rng.gen_bool(0.5) {
                0
            } else {
                rng.gen_range(1..INTERMEDIATE.len())
            };
            row.intermediate = Some(kind);
            row.vlan = Some([10, 20, 30, 99][client % 4]);
            row.with_ip = kind == 2 || rng.gen_bool(0.3);
            row.rssi = Some(rng.gen_range(-85..-35));
        }
        row
    }

    /// The row as a record of the client-event ingest schema (one column
    /// list, shared with ingest).
    fn record_of<'a>(&'a self, row: &Row) -> Record<'a> {
        let client = &self.clients[row.client];
        let ap = &self.aps[row.ap];
        let inter = row.intermediate.map(|i| INTERMEDIATE[i]);
        let failure = row.failure.map(|i| FAILURES[i]);
        let mut values = [Value::Null; MAX_FIELDS];
        let mut set = |name: &str, value: Value<'a>| {
            if let Some(i) = INGEST.index(name) {
                values[i] = value;
            }
        };
        let int = |n: Option<i32>| n.map_or(Value::Null, |n| Value::Integer(i64::from(n)));
        let long = |n: Option<i64>| n.map_or(Value::Null, Value::Integer);
        let text =
            |t: Option<&'a str>| t.filter(|t| !t.is_empty()).map_or(Value::Null, Value::Text);
        set(
            "timestamp",
            row.occurred_at.map_or(Value::Null, Value::Time),
        );
        set("macAddress", Value::Text(&client.mac));
        set("eventType", Value::Text(row.event_type));
        set("protocol", Value::Text(client.protocol));
        set("ssid", Value::Text(SSIDS[client.ssid].0));
        set("bssid", Value::Text(&ap.bssid));
        set("channel", int(Some(ap.channel)));
        set("associatedAPName", Value::Text(&ap.name));
        set("categoryCode", int(inter.map(|i| i.0)));
        set("typeCode", int(inter.map(|i| i.2)));
        set("subTypeCode", int(inter.map(|i| i.4)));
        set("category", text(inter.map(|i| i.1)));
        set("eventDescription", text(inter.map(|i| i.3)));
        set("subEventDescription", text(inter.map(|i| i.5)));
        set("vlan", int(row.vlan));
        set("ip", text(row.with_ip.then_some(client.ip.as_str())));
        set("rssi", int(row.rssi));
        set("associationTimestamp", long(row.stamps.map(|s| s.0)));
        set("authenticationTimestamp", long(row.stamps.map(|s| s.1)));
        set("networkTimestamp", long(row.stamps.map(|s| s.2)));
        set("failureCode", int(failure.map(|f| f.0)));
        set("failure", text(failure.map(|f| f.1)));
        set("subFailureCode", int(failure.map(|f| f.2)));
        set("subFailure", text(failure.map(|f| f.3)));
        set("dhcpLatency", int(row.latencies.map(|l| l.0)));
        set("aaaLatency", int(row.latencies.map(|l| l.1)));
        set("dnsLatency", int(row.latencies.map(|l| l.2)));
        Record {
            schema: &INGEST,
            values,
            tenant: None,
        }
    }
}

impl Source for Generator {
    const SCHEMA: &'static IngestSchema = &INGEST;

    fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    fn record(&mut self, at: DateTime<Utc>) -> Record<'_> {
        let row = self.draw(at);
        self.record_of(&row)
    }
}

/// Inserts `events` client events over the `opts.days` days before
/// `opts.end` (the population follows `opts.rng_seed`), and, given the
/// pseudonymiser the service will use, records the clients' pseudonyms in
/// the identity directory; returns the rows inserted.
pub async fn seed(
    client: &tokio_postgres::Client,
    opts: &SeedOptions,
    events: u64,
    pseudonymiser: Option<&Pseudonymiser>,
) -> Result<u64, DemoError> {
    if opts.days == 0 {
        return Err(DemoError::InvalidOptions(
            "days must be at least 1".to_owned(),
        ));
    }
    let mut generator = Generator::new(opts.rng_seed, opts.rng_seed.rotate_left(7));
    if let Some(pseudonymiser) = pseudonymiser {
        generator
            .directory(pseudonymiser, opts.end)
            .record(client)
            .await
            .map_err(db_err("recording client pseudonyms"))?;
    }
    if events == 0 {
        return Ok(0);
    }
    let (buckets, counts) = spread(opts, events, &mut generator.rng)?;
    copy_buckets(&mut generator, client, &buckets, &counts, &mut |_, _| {}).await
}

/// Fills the gap between the newest stored client event and `now` (at most
/// `max_days` days) at the average rate of the stored ones, its last minutes
/// at least at the trickle's ([`floor_recent`]); returns the rows inserted.
/// An empty table gets nothing.
pub async fn backfill(
    client: &tokio_postgres::Client,
    now: DateTime<Utc>,
    max_days: u32,
    pseudonymiser: &Pseudonymiser,
) -> Result<u64, DemoError> {
    let row = client
        .query_one(
            "SELECT min(occurred_at), max(occurred_at), count(*) FROM client_event",
            &[],
        )
        .await
        .map_err(db_err("finding the newest client event"))?;
    let oldest: Option<DateTime<Utc>> = row.try_get(0).map_err(db_err("reading client events"))?;
    let newest: Option<DateTime<Utc>> = row.try_get(1).map_err(db_err("reading client events"))?;
    let count: i64 = row.try_get(2).map_err(db_err("reading client events"))?;
    let (Some(oldest), Some(newest)) = (oldest, newest) else {
        return Ok(0);
    };
    let now_us = now.timestamp_micros();
    let start_us = (newest.timestamp_micros() + 1)
        .max(now_us.saturating_sub(i64::from(max_days) * MICROS_PER_DAY));
    if start_us >= now_us {
        return Ok(0);
    }
    let stored_weight: f64 = plan(
        oldest.timestamp_micros(),
        newest.timestamp_micros() + 1,
        None,
    )
    .iter()
    .map(|b| b.weight)
    .sum();
    if stored_weight <= 0.0 {
        return Ok(0);
    }
    let mut generator = Generator::new(DEFAULT_RNG_SEED, now_us as u64);
    generator
        .directory(pseudonymiser, now)
        .record(client)
        .await
        .map_err(db_err("recording client pseudonyms"))?;
    let buckets = plan(start_us, now_us, Some(&mut generator.rng));
    let gap_weight: f64 = buckets.iter().map(|b| b.weight).sum();
    let total = (count as f64 / stored_weight * gap_weight).round() as u64;
    let (buckets, counts) = floor_recent(&buckets, &apportion(total, &buckets), TRICKLE_SHARE);
    copy_buckets(&mut generator, client, &buckets, &counts, &mut |_, _| {}).await
}

/// The share of the authentication trickle's rate these client events are
/// written at (at least one a second), by the trickle and at the end of a
/// top-up.
const TRICKLE_SHARE: f64 = 0.25;

/// Keeps inserting a few client events every second until `shutdown`
/// resolves (a quarter of the authentication trickle's rate, at least one).
pub async fn trickle(
    pool: deadpool_postgres::Pool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DemoError> {
    let start_us = Utc::now().timestamp_micros();
    let generator = Generator::new(DEFAULT_RNG_SEED, (start_us as u64).rotate_left(29));
    trickle_records(pool, generator, TRICKLE_SHARE, shutdown).await
}

/// The demo of Wi-Fi client events (the registry entry's `demo`): one per
/// [`EVENTS_PER_AUTH_EVENT`] authentication events of the demo's size.
pub struct ClientDemo;

impl Demo for ClientDemo {
    fn rows(&self, options: &SeedOptions) -> u64 {
        options.events / EVENTS_PER_AUTH_EVENT
    }

    fn seed<'a>(&'a self, fill: &'a Fill<'a>, rows: u64) -> Written<'a> {
        Box::pin(async move {
            let client = fill.client().await?;
            seed(&client, fill.options, rows, fill.pseudonymiser).await
        })
    }

    fn top_up<'a>(&'a self, fill: &'a Fill<'a>) -> Written<'a> {
        Box::pin(async move {
            let client = fill.client().await?;
            let (end, days) = (fill.options.end, fill.options.days);
            backfill(&client, end, days, fill.key()?).await
        })
    }

    fn trickle(
        &self,
        pool: deadpool_postgres::Pool,
        _pseudonymiser: Pseudonymiser,
        stop: futures_util::future::BoxFuture<'static, ()>,
    ) -> Trickle {
        Box::pin(trickle(pool, stop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::test_db::{connect, fresh_database};

    #[tokio::test]
    async fn seed_writes_realistic_client_events_and_their_pseudonyms() {
        let config = fresh_database().await;
        let client = connect(&config).await;
        let end: DateTime<Utc> = "2026-10-01T00:00:00Z".parse().unwrap();
        let opts = SeedOptions {
            days: 7,
            end,
            ..SeedOptions::default()
        };
        let p = Pseudonymiser::new(b"k").unwrap();
        let inserted = seed(&client, &opts, 20_000, Some(&p)).await.unwrap();
        assert_eq!(inserted, 20_000);
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE event_type = 'Success'), \
                        count(*) FILTER (WHERE event_type = 'Failure'), \
                        count(*) FILTER (WHERE event_type = 'Intermediate'), \
                        min(occurred_at), max(occurred_at), count(DISTINCT client_mac), \
                        count(*) FILTER (WHERE event_type = 'Failure' AND failure_code IS NULL), \
                        count(*) FILTER (WHERE event_type = 'Success' AND failure_code IS NOT NULL) \
                 FROM client_event",
                &[],
            )
            .await
            .unwrap();
        let (success, failure, intermediate): (i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2));
        // Mostly successes, some failures, a few intermediate events.
        assert!(
            success > 15_000 && failure > 1_000 && intermediate > 800,
            "{success} {failure} {intermediate}"
        );
        let (oldest, newest): (DateTime<Utc>, DateTime<Utc>) = (row.get(3), row.get(4));
        assert!(oldest >= end - chrono::Duration::days(7) && newest < end);
        assert!(row.get::<_, i64>(5) > 1_000, "thousands of clients");
        assert_eq!(row.get::<_, i64>(6), 0, "every failure has a reason");
        assert_eq!(row.get::<_, i64>(7), 0, "successes have no failure fields");
        // Failures concentrate on the troubled APs.
        let troubled: Vec<String> = {
            let generator = Generator::new(opts.rng_seed, 0);
            TROUBLED_APS
                .iter()
                .map(|&i| generator.aps[i].name.clone())
                .collect()
        };
        let on_troubled: i64 = client
            .query_one(
                "SELECT count(*) FROM client_event WHERE event_type = 'Failure' AND ap_name = ANY($1)",
                &[&troubled],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            on_troubled * 2 > failure,
            "{on_troubled} of {failure} on troubled APs"
        );
        // Every stored MAC is in its one notation, and its pseudonym resolves to it.
        let mac: String = client
            .query_one("SELECT client_mac FROM client_event LIMIT 1", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(IdentityType::Mac.normalise(&mac), mac);
        let pseudonym = crate::core::identity::pseudonym_of(&p, IdentityType::Mac, &mac);
        assert_eq!(
            crate::db::directory::resolve(&client, &pseudonym)
                .await
                .unwrap(),
            Some(mac)
        );
        // The same seed gives the same data.
        let again = fresh_database().await;
        let again = connect(&again).await;
        seed(&again, &opts, 20_000, None).await.unwrap();
        let fingerprint = "SELECT md5(string_agg(occurred_at::text || client_mac || event_type, ',' ORDER BY id)) FROM client_event";
        let a: String = client.query_one(fingerprint, &[]).await.unwrap().get(0);
        let b: String = again.query_one(fingerprint, &[]).await.unwrap().get(0);
        assert_eq!(a, b);
    }
}
