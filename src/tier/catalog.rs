//! The Iceberg catalog the tier worker commits to: an SQL catalog (SQLite, the default) or
//! an Iceberg REST catalog service. Either way, files are read and written through arka's
//! own object store client.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_rest::{
    RestCatalogBuilder, REST_CATALOG_PROP_URI, REST_CATALOG_PROP_WAREHOUSE,
};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};

use super::iceberg_io::ObjectStoreIoFactory;
use super::{TierError, TierSettings};

/// The catalog's name, as arka's tables are `arka.arka.TABLE` to engines that name catalogs.
pub const CATALOG_NAME: &str = "arka";

/// Which kind of catalog a `catalog-url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKind {
    /// `sqlite:PATH?mode=rwc`.
    Sql,
    /// `http(s)://HOST[:PORT][/PATH]`: the REST service's base URI (before `/v1`).
    Rest,
}

impl CatalogKind {
    pub fn of(catalog_url: &str) -> Result<Self, String> {
        if catalog_url.starts_with("sqlite:") {
            Ok(Self::Sql)
        } else if catalog_url.starts_with("http://") || catalog_url.starts_with("https://") {
            Ok(Self::Rest)
        } else {
            Err(format!(
                "catalog-url {catalog_url:?} is neither an SQLite catalog (sqlite:PATH?mode=rwc) \
                 nor an Iceberg REST catalog (http://… or https://…)"
            ))
        }
    }
}

/// Connects to the catalog of `settings`. `warehouse` is where arka puts table metadata
/// (under its object store); a REST catalog is told it unless `catalog-options` names a
/// `warehouse` of its own (some services name warehouses rather than locate them).
pub async fn connect(
    settings: &TierSettings,
    io: Arc<ObjectStoreIoFactory>,
    warehouse: &str,
) -> Result<Arc<dyn Catalog>, TierError> {
    let url = &settings.catalog_url;
    let kind = CatalogKind::of(url).map_err(TierError::Config)?;
    let catalog: Arc<dyn Catalog> = match kind {
        CatalogKind::Sql => Arc::new(
            SqlCatalogBuilder::default()
                .uri(url)
                .warehouse_location(warehouse)
                .sql_bind_style(SqlBindStyle::QMark)
                .with_storage_factory(io)
                .load(CATALOG_NAME, HashMap::new())
                .await
                .map_err(TierError::catalog)?,
        ),
        CatalogKind::Rest => Arc::new(
            RestCatalogBuilder::default()
                .with_storage_factory(io)
                .load(
                    CATALOG_NAME,
                    rest_properties(url, warehouse, &settings.catalog_options),
                )
                .await
                .map_err(TierError::catalog)?,
        ),
    };
    Ok(catalog)
}

/// The REST catalog's properties: its URI, the warehouse, then `catalog-options`
/// (`credential`, `token`, `oauth2-server-uri`, `scope`, `prefix`, `header.NAME`, …).
fn rest_properties(
    url: &str,
    warehouse: &str,
    options: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    let mut props = HashMap::from([
        (REST_CATALOG_PROP_URI.to_string(), url.to_string()),
        (
            REST_CATALOG_PROP_WAREHOUSE.to_string(),
            warehouse.to_string(),
        ),
    ]);
    props.extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_urls_name_their_kind() {
        assert_eq!(
            CatalogKind::of("sqlite:/d/c.db?mode=rwc"),
            Ok(CatalogKind::Sql)
        );
        assert_eq!(
            CatalogKind::of("http://127.0.0.1:8181"),
            Ok(CatalogKind::Rest)
        );
        assert_eq!(
            CatalogKind::of("https://cat/api/catalog"),
            Ok(CatalogKind::Rest)
        );
        let err = CatalogKind::of("postgres://db").expect_err("not supported");
        assert!(err.contains("REST"), "{err}");
    }

    #[test]
    fn catalog_options_override_the_rest_defaults() {
        let options = BTreeMap::from([
            ("warehouse".to_string(), "prod".to_string()),
            ("credential".to_string(), "id:secret".to_string()),
        ]);
        let props = rest_properties("http://cat", "file:///w", &options);
        assert_eq!(props["uri"], "http://cat");
        assert_eq!(props["warehouse"], "prod");
        assert_eq!(props["credential"], "id:secret");
    }
}
