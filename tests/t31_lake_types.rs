//! Column types and the lake: types Iceberg holds only in a wider form reach COMMITTED next to
//! a plain table and read back from every node exactly as written, also once the WAL is
//! purged and reads come from Parquet; types with no lossless Iceberg form, and reserved
//! column names, are refused by name when a table is created or first written, before
//! anything is in the log, whether or not tiering is on.

mod common;

use std::sync::Arc;

use arka::client::{Client, WriteItem};
use arka::durability::Level;
use arrow::array::{
    ArrayRef, DictionaryArray, DurationSecondArray, Int64Array, TimestampMillisecondArray,
    TimestampSecondArray, UInt64Array, UInt8Array, UnionArray,
};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit, UnionFields};
use arrow::record_batch::RecordBatch;
use base64::Engine as _;
use common::{data, eventually, lsns_at, read_all, Cluster, DEADLINE};
use serde_json::{json, Value};

const RETENTION_BYTES: u64 = 65536;
/// 2023-11-14T22:13:20.123Z, in milliseconds.
const AT_MS: i64 = 1_700_000_000_123;

fn typed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("big", DataType::UInt64, false),
        Field::new("small", DataType::UInt8, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new(
            "local",
            DataType::Timestamp(TimeUnit::Second, Some("Europe/Paris".into())),
            true,
        ),
        Field::new(
            "kind",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ),
    ]))
}

/// Write `seq` of the typed table: its first row holds each type's extreme value.
fn typed_batch(seq: i64, rows: usize) -> RecordBatch {
    let n = rows as i64;
    let kinds: DictionaryArray<Int32Type> = (0..n)
        .map(|r| if r % 2 == 0 { "even" } else { "odd" })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![seq; rows])),
        Arc::new(UInt64Array::from_iter_values(
            (0..n).map(|r| u64::MAX - (seq * 1000 + r) as u64),
        )),
        Arc::new(UInt8Array::from_iter(
            (0..n).map(|r| (r % 3 != 1).then_some(255 - (r % 256) as u8)),
        )),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            (0..n).map(|r| AT_MS + r),
        )),
        Arc::new(
            TimestampSecondArray::from_iter_values((0..n).map(|r| AT_MS / 1000 + r))
                .with_timezone("Europe/Paris"),
        ),
        Arc::new(kinds),
    ];
    RecordBatch::try_new(typed_schema(), columns).expect("typed batch")
}

#[tokio::test(flavor = "multi_thread")]
async fn widened_types_reach_committed_and_read_back_as_written_from_every_node() {
    let mut cluster = Cluster::start_trimming(3, RETENTION_BYTES, 3_600_000).await;
    let leader = cluster.client(1).await;
    let mut written = Vec::new();
    let mut last = 0;
    for round in 0..4 {
        let writes: Vec<WriteItem> = (0..50)
            .map(|s| WriteItem::plain(typed_batch(round * 50 + s, 20)))
            .collect();
        written.extend(writes.iter().map(|w| w.batch.clone()));
        let acks = leader
            .write_all("typed", writes, Level::Committed)
            .await
            .expect("typed writes reach COMMITTED");
        let committed = lsns_at(&acks, Level::Committed);
        assert_eq!(committed.len(), 50, "{acks:?} {}", cluster.log_tails());
        last = *committed.last().expect("lsn");
    }
    // A plain table keeps reaching COMMITTED beside it.
    let acks = leader
        .write_all(
            "events",
            vec![WriteItem::plain(data::batch(1, 0, 3))],
            Level::Committed,
        )
        .await
        .expect("a plain table reaches COMMITTED");
    assert_eq!(lsns_at(&acks, Level::Committed).len(), 1, "{acks:?}");

    for id in 1..=3 {
        eventually("the WAL to be trimmed", DEADLINE, || async {
            let tier = cluster.status(id).await?["tier"].clone();
            (tier["wal_first_index"].as_u64()? > 1).then_some(())
        })
        .await;
    }
    read_back_from_every_node(&cluster, last, &written).await;
    // A node killed once its WAL was trimmed (the tier worker, which wrote the files) reads
    // the purged range back from Parquet after its restart, as the others do.
    let worker = cluster.follower_tier_worker(1).await;
    cluster.kill9(worker);
    cluster.spawn(worker);
    read_back_from_every_node(&cluster, last, &written).await;

    let warehouse = format!("{}/warehouse", cluster.local_store_url());
    let (snapshot_lsn, rows) = cluster.iceberg_rows(&warehouse, "typed", &[]);
    assert!(snapshot_lsn >= last, "arka.lsn {snapshot_lsn} < {last}");
    assert_eq!(rows.len(), 4 * 50 * 20);
    let first = &rows[0];
    assert_eq!(first["big"], json!(u64::MAX.to_string()), "{first}");
    assert_eq!(first["small"], json!(255), "{first}");
    assert_eq!(first["at"], json!("2023-11-14 22:13:20.123000"), "{first}");
    assert_eq!(
        first["local"],
        json!("2023-11-14 22:13:20+00:00"),
        "{first}"
    );
    assert_eq!(first["kind"], json!("even"), "{first}");
    assert_eq!(rows[1]["small"], Value::Null, "{}", rows[1]);
}

/// Every node reads the typed table, up to `last`, back as `written` (after a restart, once
/// it serves again).
async fn read_back_from_every_node(cluster: &Cluster, last: u64, written: &[RecordBatch]) {
    for id in 1..=3 {
        let got: Vec<RecordBatch> = eventually("the node to serve the read", DEADLINE, || async {
            let client = Client::connect(&cluster.addr(id)).await.ok()?;
            let (_, read) = client.read(&read_all("typed", last)).await.ok()?;
            Some(read.into_iter().map(|(_, b)| b).collect())
        })
        .await;
        assert_eq!(
            got, written,
            "node {id} reads the typed table back as written"
        );
    }
}

fn union_column() -> (Field, ArrayRef) {
    let fields = UnionFields::try_new(
        vec![0, 1],
        vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ],
    )
    .expect("union fields");
    let array = UnionArray::try_new(
        fields.clone(),
        ScalarBuffer::from(vec![0i8]),
        None,
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(arrow::array::StringArray::from(vec!["x"])),
        ],
    )
    .expect("union");
    let t = DataType::Union(fields, arrow::datatypes::UnionMode::Sparse);
    (Field::new("either", t, true), Arc::new(array))
}

fn one_row_batch(columns: Vec<(Field, ArrayRef)>) -> RecordBatch {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch")
}

fn id_column() -> (Field, ArrayRef) {
    (
        Field::new("id", DataType::Int64, false),
        Arc::new(Int64Array::from(vec![1])),
    )
}

async fn refused(client: &Client, table: &str, batch: RecordBatch) -> String {
    let err = client
        .write_all(table, vec![WriteItem::plain(batch)], Level::Replicated)
        .await
        .expect_err("the write is refused");
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    err.to_string()
}

async fn tables(client: &Client) -> Value {
    client
        .action("list_tables", &Value::Null)
        .await
        .expect("list_tables")["tables"]
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn columns_the_lake_cannot_hold_are_refused_by_name_before_they_are_logged() {
    // No tiering: the rule is the table's, not the tier worker's.
    let cluster = Cluster::start(3).await;
    let client = cluster.client(1).await;

    let err = refused(
        &client,
        "mixed",
        one_row_batch(vec![id_column(), union_column()]),
    )
    .await;
    assert!(err.contains("\"either\"") && err.contains("Union"), "{err}");

    let duration = (
        Field::new("took", DataType::Duration(TimeUnit::Second), true),
        Arc::new(DurationSecondArray::from(vec![5])) as ArrayRef,
    );
    let err = refused(
        &client,
        "mixed",
        one_row_batch(vec![id_column(), duration.clone()]),
    )
    .await;
    assert!(
        err.contains("\"took\"") && err.contains("Duration"),
        "{err}"
    );

    let reserved = (
        Field::new("_lsn", DataType::Int64, false),
        Arc::new(Int64Array::from(vec![1])) as ArrayRef,
    );
    let err = refused(&client, "mixed", one_row_batch(vec![id_column(), reserved])).await;
    assert!(
        err.contains("\"_lsn\"") && err.contains("reserved"),
        "{err}"
    );
    let far = (
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Arc::new(TimestampMillisecondArray::from(vec![i64::MAX])) as ArrayRef,
    );
    let err = refused(&client, "mixed", one_row_batch(vec![id_column(), far])).await;
    assert!(err.contains("\"at\"") && err.contains("range"), "{err}");
    assert_eq!(
        tables(&client).await,
        json!([]),
        "no refused write made a table"
    );

    // A column a write would add to an existing table is checked the same way.
    client
        .write_all(
            "mixed",
            vec![WriteItem::plain(one_row_batch(vec![id_column()]))],
            Level::Replicated,
        )
        .await
        .expect("a plain first write");
    let err = refused(&client, "mixed", one_row_batch(vec![id_column(), duration])).await;
    assert!(err.contains("\"took\""), "{err}");

    let schema = Schema::new(vec![union_column().0]);
    let ipc = arka::ipc::encode_schema(&schema).expect("encode schema");
    let body = json!({
        "name": "made",
        "schema": base64::engine::general_purpose::STANDARD.encode(ipc),
    });
    let err = client
        .action("create_table", &body)
        .await
        .expect_err("create_table refuses a union column")
        .to_string();
    assert!(err.contains("\"either\"") && err.contains("Union"), "{err}");
    let listed = tables(&client).await;
    assert!(
        listed.to_string().contains("mixed") && !listed.to_string().contains("made"),
        "{listed}"
    );
}
