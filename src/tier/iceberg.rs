//! Committing tiered files to Iceberg: one Iceberg table per arka table in namespace `arka`,
//! schema = the table's Arrow schema plus `_lsn`, one fast-append snapshot per commit with the
//! highest LSN it covers in its summary (`arka.lsn`). A tier worker that starts (after a
//! crash, or newly designated) reads `arka.lsn` back and appends only files above it, so a
//! range is never lost or committed twice.

use std::collections::HashMap;
use std::sync::Arc;

use arka_cluster::TieredFile;
use arrow::datatypes::Schema as ArrowSchema;
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, MappedField, NameMapping,
    NestedFieldRef, Schema, Type, DEFAULT_SCHEMA_NAME_MAPPING,
};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent};

use super::catalog;
use super::iceberg_io::ObjectStoreIoFactory;
use super::store::ObjectStorage;
use super::{TierError, TierSettings};
use crate::lake::schema::{output_schema, LSN_COLUMN};
use crate::lake::types::lake_schema;

/// Namespace of every arka table.
pub const NAMESPACE: &str = "arka";
/// Snapshot summary key holding the highest LSN the snapshot's table holds.
pub const SUMMARY_LSN: &str = "arka.lsn";
/// Table property naming the arka table incarnation (its `created_lsn`).
const CREATED_LSN_PROPERTY: &str = "arka.created-lsn";

pub struct IcebergTables {
    catalog: Arc<dyn Catalog>,
    warehouse: String,
}

impl IcebergTables {
    /// Connects to the catalog of `settings`, with the warehouse under the object store.
    pub async fn open(settings: &TierSettings, storage: &ObjectStorage) -> Result<Self, TierError> {
        let warehouse = storage.url_of("warehouse");
        let io = ObjectStoreIoFactory::new(
            &settings.store_url,
            &settings.store_options,
            storage.clone(),
        );
        let catalog = catalog::connect(settings, io, &warehouse).await?;
        let namespace = namespace();
        if !catalog
            .namespace_exists(&namespace)
            .await
            .map_err(TierError::catalog)?
        {
            catalog
                .create_namespace(&namespace, HashMap::new())
                .await
                .map_err(TierError::catalog)?;
        }
        Ok(Self { catalog, warehouse })
    }

    /// Appends the `files` of `table` that are above the `arka.lsn` of its current snapshot
    /// (after a crash between commit and report, part of them is committed already) in one
    /// snapshot whose summary says `upto`. Creates the table, or adds the columns the arka
    /// table gained, first.
    pub async fn append(
        &self,
        table: &str,
        schema: &ArrowSchema,
        created_lsn: u64,
        files: &[TieredFile],
        upto: u64,
    ) -> Result<(), TierError> {
        let wrap = |e| TierError::iceberg(table, e);
        let current = self.ensure_table(table, schema, created_lsn).await?;
        let done = summary_lsn(&current);
        let files: Vec<&TieredFile> = files.iter().filter(|f| f.max_lsn.get() > done).collect();
        if files.is_empty() {
            return Ok(());
        }
        let lsn_field = current
            .metadata()
            .current_schema()
            .field_by_name(LSN_COLUMN)
            .map(|f| f.id);
        let data_files = files
            .iter()
            .map(|f| data_file(f, lsn_field, current.metadata().default_partition_spec_id()))
            .collect::<Result<Vec<_>, _>>()?;
        let properties = HashMap::from([(SUMMARY_LSN.to_string(), upto.to_string())]);
        let tx = Transaction::new(&current);
        let tx = tx
            .fast_append()
            .add_data_files(data_files)
            .set_snapshot_properties(properties)
            .apply(tx)
            .map_err(wrap)?;
        tx.commit(self.catalog.as_ref()).await.map_err(wrap)?;
        Ok(())
    }

    /// Where the Iceberg table of the arka table incarnation created at `created_lsn` keeps
    /// its metadata.
    fn location(&self, table: &str, created_lsn: u64) -> String {
        format!("{}/{NAMESPACE}/{table}/{created_lsn}", self.warehouse)
    }

    /// Drops the Iceberg table of the arka table incarnation created at `created_lsn` from
    /// the catalog and deletes its metadata files; an Iceberg table of a later incarnation
    /// stays. Done again, it finds nothing to do.
    pub async fn drop_incarnation(
        &self,
        table: &str,
        created_lsn: u64,
        storage: &ObjectStorage,
    ) -> Result<(), TierError> {
        let wrap = |e| TierError::iceberg(table, e);
        let ident = ident(table);
        match self.catalog.load_table(&ident).await {
            Ok(current) => {
                let incarnation = (current.metadata().properties())
                    .get(CREATED_LSN_PROPERTY)
                    .and_then(|lsn| lsn.parse::<u64>().ok());
                if incarnation.is_none_or(|lsn| lsn <= created_lsn) {
                    self.catalog.drop_table(&ident).await.map_err(wrap)?;
                }
            }
            Err(e) if e.kind() == ErrorKind::TableNotFound => {}
            Err(e) => return Err(wrap(e)),
        }
        storage
            .delete_under(&self.location(table, created_lsn), |_| true)
            .await?;
        Ok(())
    }

    /// Loads the table, creating it or evolving its schema to match the arka table's.
    async fn ensure_table(
        &self,
        table: &str,
        schema: &ArrowSchema,
        created_lsn: u64,
    ) -> Result<Table, TierError> {
        let wrap = |e| TierError::iceberg(table, e);
        let ident = ident(table);
        let wanted = iceberg_schema(table, schema)?;
        // One round trip: a missing table is the load's TableNotFound, not a separate check.
        let existing = match self.catalog.load_table(&ident).await {
            Ok(current) => Some(current),
            Err(e) if e.kind() == ErrorKind::TableNotFound => None,
            Err(e) => return Err(wrap(e)),
        };
        if let Some(current) = existing {
            let incarnation = current.metadata().properties().get(CREATED_LSN_PROPERTY);
            if incarnation == Some(&created_lsn.to_string()) {
                return self.evolve(table, current, &wanted).await;
            }
            // The arka table was dropped and made again: its old Iceberg table goes too.
            tracing::warn!(
                table,
                ?incarnation,
                created_lsn,
                "replacing the iceberg table of a dropped arka table"
            );
            self.catalog.drop_table(&ident).await.map_err(wrap)?;
        }
        let creation = TableCreation::builder()
            .name(table.to_string())
            .location(self.location(table, created_lsn))
            .schema(wanted.clone())
            .properties([
                (
                    DEFAULT_SCHEMA_NAME_MAPPING.to_string(),
                    name_mapping(&wanted)?,
                ),
                (CREATED_LSN_PROPERTY.to_string(), created_lsn.to_string()),
            ])
            .build();
        let created = self
            .catalog
            .create_table(&namespace(), creation)
            .await
            .map_err(wrap)?;
        self.map_names(table, created).await
    }

    /// Adds to the Iceberg table the columns the arka table gained.
    async fn evolve(
        &self,
        table: &str,
        current: Table,
        wanted: &Schema,
    ) -> Result<Table, TierError> {
        let wrap = |e| TierError::iceberg(table, e);
        let have = current.metadata().current_schema().clone();
        let added: Vec<&NestedFieldRef> = wanted
            .as_struct()
            .fields()
            .iter()
            .filter(|f| have.field_by_name(&f.name).is_none())
            .collect();
        if added.is_empty() {
            return self.map_names(table, current).await;
        }
        let tx = Transaction::new(&current);
        let mut update = tx.update_schema();
        for field in &added {
            update = update.add_column(AddColumn::optional(
                &field.name,
                (*field.field_type).clone(),
            ));
        }
        let tx = update.apply(tx).map_err(wrap)?;
        let evolved = tx.commit(self.catalog.as_ref()).await.map_err(wrap)?;
        self.map_names(table, evolved).await
    }

    /// Files carry no Iceberg field ids, so readers map columns by name: the table's name
    /// mapping must follow its schema, whose ids the catalog assigns (a REST service may
    /// number them afresh on create) and which grows with the arka table.
    async fn map_names(&self, table: &str, current: Table) -> Result<Table, TierError> {
        let wrap = |e| TierError::iceberg(table, e);
        let mapping = name_mapping(current.metadata().current_schema())?;
        if current
            .metadata()
            .properties()
            .get(DEFAULT_SCHEMA_NAME_MAPPING)
            == Some(&mapping)
        {
            return Ok(current);
        }
        let tx = Transaction::new(&current);
        let tx = tx
            .update_table_properties()
            .set(DEFAULT_SCHEMA_NAME_MAPPING.to_string(), mapping)
            .apply(tx)
            .map_err(wrap)?;
        tx.commit(self.catalog.as_ref()).await.map_err(wrap)
    }
}

fn namespace() -> NamespaceIdent {
    NamespaceIdent::new(NAMESPACE.to_string())
}

fn ident(table: &str) -> TableIdent {
    TableIdent::new(namespace(), table.to_string())
}

fn summary_lsn(table: &Table) -> u64 {
    table
        .metadata()
        .current_snapshot()
        .and_then(|s| s.summary().additional_properties.get(SUMMARY_LSN).cloned())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The Iceberg schema of an arka table: its columns in their lake types, then `_lsn`.
fn iceberg_schema(table: &str, schema: &ArrowSchema) -> Result<Schema, TierError> {
    let lake = lake_schema(schema).map_err(|e| TierError::Schema {
        table: table.to_string(),
        reason: e.to_string(),
    })?;
    let with_lsn = output_schema(&lake, true);
    arrow_schema_to_schema_auto_assign_ids(&with_lsn).map_err(|e| TierError::iceberg(table, e))
}

/// `schema.name-mapping.default`: column names to field ids, for files written without ids.
fn name_mapping(schema: &Schema) -> Result<String, TierError> {
    fn mapped(field: &NestedFieldRef) -> MappedField {
        let children = match field.field_type.as_ref() {
            Type::Struct(s) => s.fields().iter().map(mapped).collect(),
            _ => Vec::new(),
        };
        MappedField::new(Some(field.id), vec![field.name.clone()], children)
    }
    let fields = schema.as_struct().fields().iter().map(mapped).collect();
    serde_json::to_string(&NameMapping::new(fields))
        .map_err(|e| TierError::Config(format!("encode name mapping: {e}")))
}

fn data_file(
    file: &TieredFile,
    lsn_field: Option<i32>,
    spec_id: i32,
) -> Result<DataFile, TierError> {
    let mut builder = DataFileBuilder::default();
    builder
        .content(DataContentType::Data)
        .file_path(file.path.clone())
        .file_format(DataFileFormat::Parquet)
        .partition_spec_id(spec_id)
        .record_count(file.rows)
        .file_size_in_bytes(file.bytes);
    if let Some(id) = lsn_field {
        // Bounds on `_lsn` let readers skip files by LSN.
        builder
            .lower_bounds(HashMap::from([(
                id,
                Datum::long(file.min_lsn.get() as i64),
            )]))
            .upper_bounds(HashMap::from([(
                id,
                Datum::long(file.max_lsn.get() as i64),
            )]));
    }
    builder.build().map_err(|e| TierError::Parquet {
        path: file.path.clone(),
        reason: format!("describe data file: {e}"),
    })
}
