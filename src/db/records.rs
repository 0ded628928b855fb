//! The window query of any kind and the stream that turns its rows into
//! encoded chunks.
//!
//! [`open`] does everything that can fail before the first byte: it checks
//! out a connection, resolves identity filters given as pseudonyms, and
//! starts the query the kind's description builds, as
//! `COPY (…) TO STDOUT (FORMAT binary)` (see [`crate::core::copy`]): its
//! tuples are read straight out of the protocol's messages, without the
//! per-row bookkeeping of a query's rows. The returned [`RecordStream`] then
//! pulls tuples from PostgreSQL only when the HTTP layer asks for the next
//! chunk, so a slow client slows the database down instead of filling memory:
//! tokio-postgres hands messages over a bounded channel, and once it is full
//! it stops reading the socket, and the backend blocks on its send buffer.
//!
//! Raw identities exist here only between decoding a row and showing it
//! through the request's [`IdentityWriter`]; the encoder accepts identity
//! values only as [`Shown`](crate::core::identity::Shown).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};
use futures_util::Stream;
use tokio_postgres::{
    types::{FromSql, ToSql, Type},
    CopyOutStream, Row, RowStream, Statement,
};

use crate::{
    core::{
        copy::{copy_statement, store_parameters, Parameter},
        encode::{FormulaGuard, JsonHead, RecordEncoder, UnixMicros, Value, CHUNK_TARGET},
        identity::{IdentityPolicy, IdentityType, IdentityWriter},
        kind::{ColumnType, FilterType, FilterValue, Keyset, Kind, Listing},
        negotiate::OutputFormat,
    },
    db::{
        copy::{FormatError, Next, Tuples},
        directory,
        tenant::Reader,
        DbError,
    },
    metrics::StreamTally,
};

/// When rows stop arriving for a moment, a partial chunk at least this large
/// goes out at once; a smaller one waits up to [`FLUSH_DELAY`] for company.
const FLUSH_EARLY: usize = 16 * 1024;
/// Longest time a partial chunk waits while the database is quiet.
const FLUSH_DELAY: Duration = Duration::from_millis(20);

/// A failure after streaming had started.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The database failed.
    #[error("record stream aborted by a database error: {0}")]
    Database(#[source] tokio_postgres::Error),
    /// A value could not be read.
    #[error("record stream aborted: cannot read a value: {0}")]
    Value(#[source] BoxError),
    /// The COPY data was not what it should be.
    #[error("record stream aborted: {0}")]
    Format(#[from] FormatError),
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// How a listing is written: the representation, its JSON head, who may
/// see identities, and the CSV formula guard.
#[derive(Clone, Debug)]
pub struct Output<'a> {
    /// The representation.
    pub format: OutputFormat,
    /// What a JSON body says before the records (links, paging).
    pub head: JsonHead<'a>,
    /// Pseudonyms, or raw identities for the `identities` scope.
    pub identities: &'a IdentityPolicy,
    /// What CSV does with formula-like text.
    pub guard: FormulaGuard,
    /// The reader's zone (`tz`): times in its local time with its offset.
    pub zone: Option<&'a crate::core::zone::Zone>,
}

/// Checks out a connection, resolves pseudonym filters and starts the
/// listing's query of `kind`. Nothing is sent to the client until this has
/// succeeded. `tally` receives the stream's figures (rows, how it ended);
/// see [`crate::metrics::Metrics::stream`].
pub async fn open(
    pool: &Pool,
    kind: &'static Kind,
    listing: &Listing,
    output: Output<'_>,
    tally: StreamTally,
) -> Result<RecordStream, DbError> {
    // A window of every record at instants between two times comes in
    // the order of the kind's (time, id) index: planned so
    // ([`super::tenant::checkout_reading`]). Not spans: their windows also
    // reach back.
    let planning = if listing.selection.filters.is_empty()
        && listing.condition.is_none()
        && matches!(kind.time, crate::core::kind::TimeModel::Instant { .. })
    {
        super::tenant::Planning::InOrder
    } else {
        super::tenant::Planning::Estimated
    };
    let client =
        super::tenant::checkout_reading(pool, listing.selection.tenant.as_deref(), planning)
            .await?;
    let sql = listing.sql(kind);
    let params = params(&client, kind, listing).await?;
    start(client, kind, &sql, &params, output, tally, None).await
}

/// A connection for `listing`'s reads: bound to the caller's organization
/// when it reads one only (row security, [`super::tenant`]).
async fn checkout(pool: &Pool, listing: &Listing) -> Result<Reader, DbError> {
    super::tenant::checkout(pool, listing.selection.tenant.as_deref()).await
}

/// Starts `sql` (the records of `kind`, in its columns' order, with these
/// parameters) on `client` as a record stream. With a `position` (a feed's
/// page), `kind`'s last column is each record's position, which `sql`
/// selects as its two parts (`xid8`, `int8`) and the stream writes as the
/// `position` prefix followed by `xid.id` (a cursor: formatted here, where
/// it costs a fraction of what text concatenation costs the database per
/// row).
pub(crate) async fn start(
    client: Reader,
    kind: &'static Kind,
    sql: &str,
    params: &[Param],
    output: Output<'_>,
    tally: StreamTally,
    position: Option<String>,
) -> Result<RecordStream, DbError> {
    // The query itself, prepared (once per connection) for its column types.
    let query = client.prepare_cached(sql).await?;
    let parameters: Vec<Parameter> = params.iter().map(Param::in_copy).collect();
    // The COPY text holds this listing's times and numbers: prepared for
    // this stream only, alongside storing its settings (one round trip).
    let copy_sql = copy_statement(sql, &parameters);
    let copy = client.prepare(&copy_sql);
    let copy = match store_parameters(&parameters) {
        None => copy.await?,
        Some(store) => {
            let settings: Vec<_> = params
                .iter()
                .zip(&parameters)
                .filter(|(_, parameter)| matches!(parameter, Parameter::Setting(_)))
                .map(|(param, _)| param.as_sql())
                .collect();
            let store = async {
                let statement = client.prepare_cached(&store).await?;
                client.execute(&statement, &settings).await
            };
            futures_util::future::try_join(store, copy).await?.1
        }
    };
    let data = client.copy_out(&copy).await?;
    let source = Source::Copy {
        data: Box::pin(data),
        tuples: Tuples::new(query.columns().len()),
    };
    Ok(RecordStream::new(
        client,
        kind,
        query.columns(),
        source,
        output,
        tally,
        position,
    ))
}

/// A record stream of `kind` over `rows`, the rows of `statement` (the
/// records of `kind`, in its columns' order), already under way on
/// `client`: a feed's page, whose query went out with its head in one
/// round trip ([`super::changes::begin`]). `position` as for [`start`].
pub(crate) fn stream_rows(
    client: Reader,
    kind: &'static Kind,
    statement: &Statement,
    rows: RowStream,
    output: Output<'_>,
    tally: StreamTally,
    position: Option<String>,
) -> RecordStream {
    let source = Source::Rows {
        data: Box::pin(rows),
        row: None,
        fresh: false,
        ended: false,
    };
    RecordStream::new(
        client,
        kind,
        statement.columns(),
        source,
        output,
        tally,
        position,
    )
}

impl RecordStream {
    /// The stream of `source`'s tuples, of `columns` (the statement's).
    fn new(
        client: Reader,
        kind: &'static Kind,
        columns: &[tokio_postgres::Column],
        source: Source,
        output: Output<'_>,
        tally: StreamTally,
        position: Option<String>,
    ) -> RecordStream {
        RecordStream {
            kind,
            source,
            client: Some(client),
            encoder: RecordEncoder::new(kind, output.format, output.head, output.guard)
                .in_zone(output.zone.cloned()),
            identities: IdentityWriter::new(output.identities),
            by_bytes: decodable(
                &kind.columns[..shown_columns(kind, position.is_some())],
                columns,
            ),
            types: columns.iter().map(|c| c.type_().clone()).collect(),
            position: position.map(|prefix| Position {
                text: prefix.clone(),
                prefix: prefix.len(),
            }),
            time_column: kind.time_column(),
            flush_timer: None,
            rows_sent: 0,
            state: State::Streaming,
            error: None,
            tally,
        }
    }
}

/// Where a [`RecordStream`]'s tuples come from.
enum Source {
    /// `COPY … TO STDOUT (FORMAT binary)`: its data, message by message,
    /// and the tuples in it.
    Copy {
        data: Pin<Box<CopyOutStream>>,
        tuples: Tuples,
    },
    /// A prepared statement's rows, in binary: a row's message has the
    /// layout of a binary COPY tuple.
    Rows {
        data: Pin<Box<RowStream>>,
        /// The last row received.
        row: Option<Row>,
        /// It has not been read yet.
        fresh: bool,
        /// The rows are complete.
        ended: bool,
    },
}

/// A field's bytes as they came, whatever its type.
struct RawField<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawField<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(RawField(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl Source {
    /// The next tuple out of the data received so far.
    fn advance(&mut self) -> Result<Next, FormatError> {
        match self {
            Source::Copy { tuples, .. } => tuples.advance(),
            Source::Rows { fresh, .. } => Ok(if std::mem::take(fresh) {
                Next::Tuple
            } else {
                Next::NeedMore
            }),
        }
    }

    /// Receives more data: `Some(Ok(()))` when some came, `None` at the end.
    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(), tokio_postgres::Error>>> {
        match self {
            Source::Copy { data, tuples } => data
                .as_mut()
                .poll_next(cx)
                .map(|next| next.map(|message| message.map(|message| tuples.feed(message)))),
            Source::Rows {
                data,
                row,
                fresh,
                ended,
            } => data.as_mut().poll_next(cx).map(|next| match next {
                Some(Ok(next)) => {
                    *row = Some(next);
                    *fresh = true;
                    Some(Ok(()))
                }
                Some(Err(error)) => Some(Err(error)),
                None => {
                    *ended = true;
                    None
                }
            }),
        }
    }

    /// Whether the data is complete (a COPY's trailer was read).
    fn ended(&self) -> bool {
        match self {
            Source::Copy { tuples, .. } => tuples.ended(),
            Source::Rows { ended, .. } => *ended,
        }
    }

    /// Field `i` of the current tuple (`None` for NULL).
    fn field(&self, i: usize) -> Option<&[u8]> {
        match self {
            Source::Copy { tuples, .. } => tuples.field(i),
            Source::Rows { row, .. } => row
                .as_ref()
                .and_then(|row| row.try_get::<_, Option<RawField<'_>>>(i).ok().flatten())
                .map(|field| field.0),
        }
    }
}

/// The rows of `SELECT {columns}` over the listing (its filters, bounds,
/// condition and order), at most `limit`: for answers that are not a
/// stream of records (a calendar, a page's boundaries).
pub async fn select(
    pool: &Pool,
    kind: &Kind,
    listing: &Listing,
    columns: &str,
    limit: i64,
) -> Result<Vec<Row>, DbError> {
    let client = checkout(pool, listing).await?;
    let unpaged = Listing {
        page: None,
        ..listing.clone()
    };
    let sql = format!("{} LIMIT {limit}", unpaged.select_sql(kind, columns));
    let statement = client.prepare_cached(&sql).await?;
    let params = params(&client, kind, &unpaged).await?;
    Ok(client
        .query(
            &statement,
            &params.iter().map(Param::as_sql).collect::<Vec<_>>(),
        )
        .await?)
}

/// The rows of `SELECT {columns}` over the listing, its page included (the
/// offset and limit are parameters: one statement for every page).
pub async fn select_page(
    pool: &Pool,
    kind: &Kind,
    listing: &Listing,
    columns: &str,
) -> Result<Vec<Row>, DbError> {
    let client = checkout(pool, listing).await?;
    let statement = client
        .prepare_cached(&listing.select_sql(kind, columns))
        .await?;
    let params = params(&client, kind, listing).await?;
    Ok(client
        .query(
            &statement,
            &params.iter().map(Param::as_sql).collect::<Vec<_>>(),
        )
        .await?)
}

/// The counts over one window (issue 26): the rows of
/// [`Counts::sql`](crate::core::counts::Counts::sql) with the
/// values counted by as stored (the caller shows identities as the reader
/// may see them). `zone` is the IANA name buckets are local to.
pub async fn counts(
    pool: &Pool,
    kind: &Kind,
    listing: &Listing,
    counts: &crate::core::counts::Counts,
    zone: &str,
) -> Result<Vec<crate::core::counts::CountRow>, DbError> {
    let client = checkout(pool, listing).await?;
    let statement = client.prepare_cached(&counts.sql(kind, listing)).await?;
    let mut params = params(&client, kind, listing).await?;
    let (with_zone, with_top) = counts.extra_parameters();
    if with_zone {
        params.push(Param::Text(Some(zone.to_owned())));
    }
    if with_top {
        params.push(Param::Integer(counts.top));
    }
    let rows = client
        .query(
            &statement,
            &params.iter().map(Param::as_sql).collect::<Vec<_>>(),
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(crate::core::counts::CountRow {
                time: row.try_get(0)?,
                key: row.try_get(1)?,
                count: row.try_get(2)?,
                sums: (0..counts.sums.len())
                    .map(|i| row.try_get(3 + i))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

/// How many records the listing has (ignoring its page).
pub async fn count(pool: &Pool, kind: &Kind, listing: &Listing) -> Result<i64, DbError> {
    one_value(pool, kind, Listing::count_sql, listing).await
}

/// Whether the listing has any record (ignoring its page).
pub async fn exists(pool: &Pool, kind: &Kind, listing: &Listing) -> Result<bool, DbError> {
    one_value(pool, kind, Listing::exists_sql, listing).await
}

/// The one value `sql` (over the listing's predicate, without a page) returns.
async fn one_value<T>(
    pool: &Pool,
    kind: &Kind,
    sql: fn(&Listing, &Kind) -> String,
    listing: &Listing,
) -> Result<T, DbError>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    let client = checkout(pool, listing).await?;
    let unpaged = Listing {
        page: None,
        keyset: None,
        ..listing.clone()
    };
    let statement = client.prepare_cached(&sql(&unpaged, kind)).await?;
    let params = params(&client, kind, &unpaged).await?;
    let row = client
        .query_one(
            &statement,
            &params.iter().map(Param::as_sql).collect::<Vec<_>>(),
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// One query parameter of a listing.
#[derive(Clone, Debug)]
pub(crate) enum Param {
    Time(DateTime<Utc>),
    /// A transaction id.
    Xid(Xid8),
    Integer(i64),
    /// A text, or NULL (matches nothing: an unknown pseudonym).
    Text(Option<String>),
    Integers(Vec<i64>),
    Texts(Vec<String>),
}

impl Param {
    /// How it reaches a COPY statement: times and numbers as literals
    /// (formatted here from their typed values), text and arrays in a
    /// session setting.
    fn in_copy(&self) -> Parameter {
        match self {
            Param::Time(t) => Parameter::Literal(time_literal(*t)),
            Param::Xid(xid) => Parameter::Literal(format!("'{}'::xid8", xid.0)),
            // Quoted: `-9223372036854775808::int8` would negate a number
            // that int8 cannot hold.
            Param::Integer(n) => Parameter::Literal(format!("'{n}'::int8")),
            // No text matches NULL: the unknown pseudonym's answer.
            Param::Text(None) => Parameter::Literal("NULL::text".into()),
            Param::Text(Some(_)) => Parameter::Setting("text"),
            Param::Integers(_) => Parameter::Setting("int8[]"),
            Param::Texts(_) => Parameter::Setting("text[]"),
        }
    }

    pub(crate) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Time(t) => t,
            Param::Xid(xid) => xid,
            Param::Integer(n) => n,
            Param::Text(t) => t,
            Param::Integers(v) => v,
            Param::Texts(v) => v,
        }
    }
}

/// A time as SQL: an RFC 3339 literal for the years 0001 to 9999 (every
/// window), else microseconds from the Unix epoch, which PostgreSQL reads
/// whatever the year (its text form of other years needs `BC` or five
/// digits), as it reads a bound value; out of its range, both fail alike.
fn time_literal(t: DateTime<Utc>) -> String {
    use chrono::Datelike;
    if (1..=9999).contains(&t.year()) {
        format!(
            "'{}'::timestamptz",
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )
    } else {
        format!(
            "('epoch'::timestamptz + '{} microseconds'::interval)",
            t.timestamp_micros()
        )
    }
}

/// The listing's parameters in the order of [`Listing::sql`], with
/// pseudonyms resolved to the raw values they stand for (an unknown
/// pseudonym matches nothing).
async fn params(client: &Object, kind: &Kind, listing: &Listing) -> Result<Vec<Param>, DbError> {
    let mut params = Vec::new();
    params.extend(listing.lower.map(|b| Param::Time(b.at)));
    params.extend(listing.upper.map(|b| Param::Time(b.at)));
    if listing.splits_spans(kind) {
        params.extend(start_bound(client, kind, listing).await?.map(Param::Time));
    }
    params.extend(filter_params(client, kind, &listing.selection).await?);
    if let Some(Keyset { after: Some(id) }) = listing.keyset {
        params.push(Param::Integer(id));
    }
    if let Some(seek) = listing.seek {
        params.push(Param::Time(seek.at));
        params.push(Param::Integer(seek.id));
    }
    if let Some(page) = listing.page {
        params.push(Param::Integer(page.offset));
        params.push(Param::Integer(page.limit));
    }
    Ok(params)
}

/// The parameters of `selection`'s filters
/// ([`Kind::filter_terms`](crate::core::kind::Kind::filter_terms)), with
/// pseudonyms resolved to the raw values they stand for (an unknown
/// pseudonym matches nothing).
pub(crate) async fn filter_params(
    client: &Object,
    kind: &Kind,
    selection: &crate::core::kind::Selection,
) -> Result<Vec<Param>, DbError> {
    let mut params = Vec::new();
    for (index, values) in &selection.filters {
        let identity = match kind.filters[*index].ty {
            FilterType::Identity(ty) => Some(ty),
            _ => None,
        };
        let mut integers = Vec::new();
        let mut texts = Vec::new();
        for value in values {
            let raws = match value {
                FilterValue::Integer(n) => {
                    integers.push(*n);
                    continue;
                }
                FilterValue::Text(text) => vec![text.clone()],
                FilterValue::Pseudonym(p) => directory::resolve(&***client, p)
                    .await?
                    .into_iter()
                    .collect(),
                FilterValue::Sealed(_, candidates) => {
                    let mut raws = Vec::new();
                    for p in candidates {
                        raws.extend(directory::resolve(&***client, p).await?);
                    }
                    raws
                }
            };
            for raw in raws {
                match identity {
                    Some(ty) => texts.extend(ty.stored_forms(&raw)),
                    None => texts.push(raw),
                }
            }
        }
        params.push(if identity.is_some() {
            Param::Texts(texts)
        } else {
            match (values.len(), integers.is_empty()) {
                (1, false) => Param::Integer(integers[0]),
                (1, true) => Param::Text(texts.pop()),
                (_, false) => Param::Integers(integers),
                (_, true) => Param::Texts(texts),
            }
        });
    }
    if kind.tenant.is_some() {
        if !selection.tenants.is_empty() {
            params.push(Param::Texts(selection.tenants.clone()));
        }
        if let Some(tenant) = selection
            .tenant
            .as_ref()
            .filter(|_| !selection.without_tenant_term)
        {
            params.push(Param::Text(Some(tenant.to_string())));
        }
    }
    Ok(params)
}

/// A transaction id as PostgreSQL's `xid8` (8 bytes, big-endian, in the
/// binary protocol), which tokio-postgres does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xid8(pub u64);

impl ToSql for Xid8 {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, BoxError> {
        bytes::BufMut::put_u64(out, self.0);
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "xid8"
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Xid8 {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Xid8, BoxError> {
        Ok(Xid8(u64::from_be_bytes(raw.try_into()?)))
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "xid8"
    }
}

/// The start bound of a split listing of spans
/// ([`Listing::start_bound`]): its lower bound less the length past which
/// few closed spans are longer, read now (an index answers it).
async fn start_bound(
    client: &Object,
    kind: &Kind,
    listing: &Listing,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let Some(sql) = crate::core::kind::long_span_sql(kind) else {
        return Ok(None);
    };
    let statement = client.prepare_cached(&sql).await?;
    let micros: i64 = client.query_one(&statement, &[]).await?.try_get(0)?;
    Ok(listing.start_bound(chrono::Duration::microseconds(micros)))
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A value [`decode`] read.
enum Decoded<'a> {
    Value(Value<'a>),
    /// An identity column's raw text, to be shown by the identity writer.
    Identity(IdentityType, &'a str),
}

/// Reads the binary bytes of a column of type `ty` (the statement's column
/// types were checked by [`decodable`]); `None` when they are not what the
/// type's bytes should be (the typed decoder then says why).
fn decode(ty: ColumnType, bytes: &[u8]) -> Option<Decoded<'_>> {
    let value = match ty {
        ColumnType::Timestamp => {
            let micros = i64::from_be_bytes(bytes.try_into().ok()?);
            Value::Micros(UnixMicros::new(micros.checked_add(POSTGRES_EPOCH_MICROS)?)?)
        }
        ColumnType::Text => Value::Text(text(bytes)?),
        ColumnType::Integer => Value::Integer(i64::from_be_bytes(bytes.try_into().ok()?)),
        ColumnType::Float => Value::Float(f64::from_be_bytes(bytes.try_into().ok()?)),
        ColumnType::Boolean => match bytes {
            [b] => Value::Boolean(*b != 0),
            _ => return None,
        },
        ColumnType::Identity(ty) => return Some(Decoded::Identity(ty, text(bytes)?)),
    };
    Some(Decoded::Value(value))
}

/// Text bytes as a `str`, when they are UTF-8. Most values are short and
/// ASCII: `is_ascii` checks them a word at a time, several times faster than
/// a UTF-8 validator on a few bytes (simdutf8 hands inputs under 64 bytes to
/// the standard library's).
fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: every byte is below 0x80, and ASCII text is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        simdutf8::basic::from_utf8(bytes).ok()
    }
}

/// Whether the statement's columns have the types [`decode`] reads for
/// these columns (anything else goes through `FromSql`).
fn decodable(
    kind_columns: &[crate::core::kind::Column],
    columns: &[tokio_postgres::Column],
) -> bool {
    columns.len() >= kind_columns.len()
        && kind_columns.iter().zip(columns).all(|(column, c)| {
            let ty = c.type_();
            match column.ty {
                ColumnType::Timestamp => *ty == Type::TIMESTAMPTZ,
                ColumnType::Text | ColumnType::Identity(_) => {
                    [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty)
                }
                ColumnType::Integer => *ty == Type::INT8,
                ColumnType::Float => *ty == Type::FLOAT8,
                ColumnType::Boolean => *ty == Type::BOOL,
            }
        })
}

/// A value of PostgreSQL type `ty` (binary bytes, `None` for NULL) read as
/// `T` by its `FromSql` decoder, which says why when it cannot.
fn read<'a, T: FromSql<'a>>(ty: &Type, raw: Option<&'a [u8]>) -> Result<T, BoxError> {
    if !T::accepts(ty) {
        return Err(format!(
            "a column of type {ty} cannot be read as {}",
            std::any::type_name::<T>()
        )
        .into());
    }
    T::from_sql_nullable(ty, raw)
}

/// A value of type `column` read by its `FromSql` decoder.
fn typed<'a>(
    ty: &Type,
    raw: Option<&'a [u8]>,
    column: ColumnType,
    identities: &'a mut IdentityWriter,
) -> Result<Value<'a>, BoxError> {
    Ok(match column {
        ColumnType::Timestamp => {
            read::<Option<DateTime<Utc>>>(ty, raw)?.map_or(Value::Null, Value::Timestamp)
        }
        ColumnType::Text => read::<Option<&str>>(ty, raw)?.map_or(Value::Null, Value::Text),
        ColumnType::Integer => read::<Option<i64>>(ty, raw)?.map_or(Value::Null, Value::Integer),
        ColumnType::Float => read::<Option<f64>>(ty, raw)?.map_or(Value::Null, Value::Float),
        ColumnType::Boolean => read::<Option<bool>>(ty, raw)?.map_or(Value::Null, Value::Boolean),
        ColumnType::Identity(identity) => match read::<Option<&str>>(ty, raw)? {
            Some(raw) => Value::Identity(identities.show(identity, raw)),
            None => Value::Null,
        },
    })
}

/// How many of `kind`'s columns are read one field each: all but the
/// position when the stream writes one.
fn shown_columns(kind: &Kind, position: bool) -> usize {
    kind.columns.len() - usize::from(position && !kind.columns.is_empty())
}

/// A feed page's position column, written from its two fields.
#[derive(Debug)]
struct Position {
    /// The cursor's prefix (`kind.epoch.`), then the row's `xid.id`.
    text: String,
    /// Where the prefix ends.
    prefix: usize,
}

impl Position {
    /// The cursor of the row whose position fields are these (binary
    /// `xid8` and `int8`).
    fn cursor(&mut self, xid: &[u8], id: &[u8]) -> Option<&str> {
        let xid = u64::from_be_bytes(xid.try_into().ok()?);
        let id = i64::from_be_bytes(id.try_into().ok()?);
        self.text.truncate(self.prefix);
        self.text.push_str(itoa::Buffer::new().format(xid));
        self.text.push('.');
        self.text.push_str(itoa::Buffer::new().format(id));
        Some(&self.text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Rows may still come.
    Streaming,
    /// The JSON body was closed in-band after an error; send what is buffered.
    Closing,
    /// A CSV body must be aborted after the buffered bytes went out.
    Aborting,
    /// Nothing more to send.
    Done,
}

/// A stream of encoded chunks (tens of KiB each) of one listing's records.
///
/// Dropping it before the end (the client went away) cancels the query and
/// returns the connection to the pool only once it is idle again.
pub struct RecordStream {
    kind: &'static Kind,
    /// Where the tuples come from.
    source: Source,
    /// The PostgreSQL type of each column.
    types: Vec<Type>,
    client: Option<Reader>,
    encoder: RecordEncoder,
    identities: IdentityWriter,
    /// The statement's column types are those [`decode`] reads.
    by_bytes: bool,
    /// A feed page's position column, read from two fields.
    position: Option<Position>,
    /// The column holding each record's time (`Kind::time_column`), found
    /// once: a key schedule picks each record's key by it.
    time_column: Option<usize>,
    flush_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    rows_sent: u64,
    state: State,
    /// The error that aborts a CSV body, held until the rows buffered
    /// before it are out.
    error: Option<StreamError>,
    /// Metrics and the request log's row count.
    tally: StreamTally,
}

impl RecordStream {
    /// Rows encoded so far.
    pub fn rows(&self) -> u64 {
        self.rows_sent
    }

    /// Encodes the tuple just read.
    fn push(&mut self) -> Result<(), BoxError> {
        let source = &self.source;
        if self.identities.needs_time() {
            // A key schedule: pseudonyms of the key of the record's month.
            if let Some(index) = self.time_column {
                let ty = self.types.get(index).ok_or("no time column")?;
                if let Some(at) = read::<Option<DateTime<Utc>>>(ty, source.field(index))? {
                    self.identities.at(at);
                }
            }
        }
        self.encoder.begin_row();
        let shown = shown_columns(self.kind, self.position.is_some());
        for ((i, column), ty) in self.kind.columns[..shown]
            .iter()
            .enumerate()
            .zip(&self.types)
        {
            let identities = &mut self.identities;
            let raw = source.field(i);
            let value = match raw {
                None => Value::Null,
                Some(bytes) if self.by_bytes => match decode(column.ty, bytes) {
                    Some(Decoded::Value(value)) => value,
                    Some(Decoded::Identity(ty, raw)) => Value::Identity(identities.show(ty, raw)),
                    // Not what the type's bytes should be: the typed
                    // decoder gives the value or the error.
                    None => typed(ty, raw, column.ty, identities)?,
                },
                Some(_) => typed(ty, raw, column.ty, identities)?,
            };
            self.encoder.value(value);
        }
        if let Some(position) = &mut self.position {
            let (xid, id) = (source.field(shown), source.field(shown + 1));
            let cursor = xid
                .zip(id)
                .and_then(|(xid, id)| position.cursor(xid, id))
                .ok_or("a record's position is not an xid8 and an int8")?;
            self.encoder.value(Value::Text(cursor));
        }
        self.encoder.end_row();
        self.rows_sent += 1;
        Ok(())
    }

    fn chunk(&mut self) -> Poll<Option<Result<Bytes, StreamError>>> {
        self.flush_timer = None;
        self.tally.set_rows(self.rows_sent);
        Poll::Ready(Some(Ok(self.encoder.take())))
    }

    fn fail(&mut self, error: StreamError) {
        tracing::error!(
            error = %error,
            rows = self.rows_sent,
            kind = self.kind.name,
            "database error while streaming records"
        );
        self.tally.aborted_by_database();
        // The connection may be broken; do not hand it back to the pool.
        if let Some(client) = self.client.take() {
            client.discard();
        }
        self.state = if self
            .encoder
            .fail("The database failed while streaming the records; the list is incomplete.")
        {
            State::Closing
        } else {
            self.error = Some(error);
            State::Aborting
        };
    }
}

impl Stream for RecordStream {
    type Item = Result<Bytes, StreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Closing => {
                    this.state = State::Done;
                    return this.chunk();
                }
                State::Aborting => {
                    if this.encoder.buffered() > 0 {
                        return this.chunk();
                    }
                    this.state = State::Done;
                    if let Some(error) = this.error.take() {
                        return Poll::Ready(Some(Err(error)));
                    }
                    return Poll::Ready(None);
                }
                State::Streaming => {}
            }
            match this.source.advance() {
                Ok(Next::Tuple) => {
                    if let Err(error) = this.push() {
                        this.fail(StreamError::Value(error));
                        continue;
                    }
                    if this.encoder.buffered() >= CHUNK_TARGET {
                        return this.chunk();
                    }
                    continue;
                }
                Ok(Next::NeedMore) => {}
                Err(error) => {
                    this.fail(error.into());
                    continue;
                }
            }
            match this.source.poll_data(cx) {
                Poll::Ready(Some(Ok(()))) => {}
                Poll::Ready(Some(Err(error))) => this.fail(StreamError::Database(error)),
                Poll::Ready(None) if !this.source.ended() => {
                    this.fail(FormatError::TRUNCATED.into());
                }
                Poll::Ready(None) => {
                    this.encoder.finish();
                    this.state = State::Done;
                    // The query is complete: the connection goes back now.
                    this.client = None;
                    return this.chunk();
                }
                Poll::Pending => {
                    let buffered = this.encoder.buffered();
                    if buffered >= FLUSH_EARLY || (buffered > 0 && this.rows_sent == 0) {
                        // A big partial chunk, or the prefix before any row:
                        // send it now (the prefix gives a fast first byte).
                        return this.chunk();
                    }
                    if buffered > 0 {
                        let timer = this
                            .flush_timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(FLUSH_DELAY)));
                        if timer.as_mut().poll(cx).is_ready() {
                            return this.chunk();
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for RecordStream {
    fn drop(&mut self) {
        self.tally.set_rows(self.rows_sent);
        let Some(client) = self.client.take() else {
            return;
        };
        self.tally.aborted_by_client();
        // Unfinished: the client went away mid-stream. Cancel the query so the
        // backend stops, and give the connection back only when it is idle.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            client.discard();
            return;
        };
        tracing::info!(
            rows = self.rows_sent,
            "client went away; cancelling the query"
        );
        runtime.spawn(super::tenant::cancel(client));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(ty: ColumnType, bytes: &[u8]) -> Option<String> {
        match decode(ty, bytes)? {
            Decoded::Value(value) => Some(format!("{value:?}")),
            Decoded::Identity(ty, raw) => Some(format!("{ty:?} {raw}")),
        }
    }

    #[test]
    fn timestamps_are_microseconds_from_2000() {
        let t = |micros: i64| value(ColumnType::Timestamp, &micros.to_be_bytes());
        let expected = UnixMicros::new(POSTGRES_EPOCH_MICROS + 1_500_000).unwrap();
        assert_eq!(t(1_500_000), Some(format!("{:?}", Value::Micros(expected))));
        assert_eq!(
            expected.to_datetime().to_rfc3339(),
            "2000-01-01T00:00:01.500+00:00"
        );
        // 'infinity' and '-infinity', and the wrong length: the typed decoder's turn.
        assert_eq!(t(i64::MAX), None);
        assert_eq!(t(i64::MIN), None);
        assert_eq!(value(ColumnType::Timestamp, &[0; 4]), None);
    }

    #[test]
    fn times_and_numbers_are_literals_and_text_is_a_setting() {
        use chrono::TimeZone;
        let literal = |p: Param| match p.in_copy() {
            Parameter::Literal(text) => text,
            Parameter::Setting(ty) => panic!("a setting of {ty}"),
        };
        let first = Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            literal(Param::Time(first)),
            "'0001-01-01T00:00:00.000000Z'::timestamptz"
        );
        let last = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()
            + chrono::Duration::microseconds(999_999);
        assert_eq!(
            literal(Param::Time(last)),
            "'9999-12-31T23:59:59.999999Z'::timestamptz"
        );
        let year_zero = Utc.with_ymd_and_hms(0, 12, 31, 0, 0, 0).unwrap();
        assert_eq!(
            literal(Param::Time(year_zero)),
            "('epoch'::timestamptz + '-62135683200000000 microseconds'::interval)"
        );
        let year_10000 = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            literal(Param::Time(year_10000)),
            "('epoch'::timestamptz + '253402300800000000 microseconds'::interval)"
        );
        assert_eq!(literal(Param::Integer(-5)), "'-5'::int8");
        assert_eq!(
            literal(Param::Integer(i64::MIN)),
            "'-9223372036854775808'::int8"
        );
        assert_eq!(literal(Param::Text(None)), "NULL::text");
        for (param, ty) in [
            (Param::Text(Some("x'); --".into())), "text"),
            (Param::Texts(vec!["a".into()]), "text[]"),
            (Param::Integers(vec![1]), "int8[]"),
        ] {
            assert_eq!(param.in_copy(), Parameter::Setting(ty));
        }
    }

    #[test]
    fn scalars_and_text() {
        assert_eq!(
            value(ColumnType::Integer, &(-42i64).to_be_bytes()),
            Some("Integer(-42)".into())
        );
        assert_eq!(
            value(ColumnType::Float, &1.5f64.to_be_bytes()),
            Some("Float(1.5)".into())
        );
        assert_eq!(
            value(ColumnType::Boolean, &[1]),
            Some("Boolean(true)".into())
        );
        assert_eq!(
            value(ColumnType::Boolean, &[0]),
            Some("Boolean(false)".into())
        );
        assert_eq!(value(ColumnType::Boolean, &[0, 1]), None);
        assert_eq!(value(ColumnType::Integer, &[0; 4]), None);
        assert_eq!(
            value(ColumnType::Text, "Zürich".as_bytes()),
            Some("Text(\"Zürich\")".into())
        );
        assert_eq!(
            value(ColumnType::Identity(IdentityType::User), b"bob"),
            Some("User bob".into())
        );
        // Not UTF-8 (a SQL_ASCII database): the typed decoder reports it.
        assert_eq!(value(ColumnType::Text, &[0xff, 0xfe]), None);
        assert_eq!(
            value(ColumnType::Identity(IdentityType::Mac), &[0xc3]),
            None
        );
    }
}
