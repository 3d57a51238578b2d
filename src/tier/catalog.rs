//! The Iceberg catalog the tier worker commits to: an SQL catalog (SQLite, the default) or
//! an Iceberg REST catalog service. Either way, files are read and written through arka's
//! own object store client.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_rest::{RestCatalogBuilder, REST_CATALOG_PROP_URI};
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
    pub fn of(catalog_url: &str) -> Result<Self, TierError> {
        if catalog_url.starts_with("sqlite:") {
            Ok(Self::Sql)
        } else if catalog_url.starts_with("http://") || catalog_url.starts_with("https://") {
            Ok(Self::Rest)
        } else {
            Err(TierError::Config(format!(
                "catalog-url {catalog_url:?} is neither an SQLite catalog (sqlite:PATH?mode=rwc) \
                 nor an Iceberg REST catalog (http://… or https://…)"
            )))
        }
    }
}

/// Connects to the catalog of `settings`. `warehouse` is where arka puts table metadata
/// (under its object store): the SQL catalog's warehouse. A REST catalog places tables
/// where arka asks, so it is told a warehouse only when `catalog-options` names one (many
/// services name their warehouses rather than locate them).
pub async fn connect(
    settings: &TierSettings,
    io: Arc<ObjectStoreIoFactory>,
    warehouse: &str,
) -> Result<Arc<dyn Catalog>, TierError> {
    let url = &settings.catalog_url;
    let kind = CatalogKind::of(url)?;
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
                    rest_properties(url, &settings.catalog_options),
                )
                .await
                .map_err(TierError::catalog)?,
        ),
    };
    Ok(catalog)
}

/// The REST catalog's properties: its URI, then `catalog-options` (`warehouse`,
/// `credential`, `token`, `oauth2-server-uri`, `scope`, `prefix`, `header.NAME`, …).
fn rest_properties(url: &str, options: &BTreeMap<String, String>) -> HashMap<String, String> {
    let mut props: HashMap<String, String> = options.clone().into_iter().collect();
    props.insert(REST_CATALOG_PROP_URI.to_string(), url.to_string());
    props
}

/// Checks `catalog-options` against the catalog they are for.
pub fn check_options(
    catalog_url: Option<&str>,
    options: &BTreeMap<String, String>,
) -> Result<(), TierError> {
    let kind = catalog_url.map(CatalogKind::of).transpose()?;
    if options.is_empty() {
        return Ok(());
    }
    if kind != Some(CatalogKind::Rest) {
        return Err(TierError::Config(
            "catalog-options apply to a REST catalog-url (http:// or https://) only".into(),
        ));
    }
    if options.contains_key(REST_CATALOG_PROP_URI) {
        return Err(TierError::Config(
            "catalog-options must not set uri: catalog-url is the catalog's URI".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_urls_name_their_kind() {
        assert_eq!(
            CatalogKind::of("sqlite:/d/c.db?mode=rwc").ok(),
            Some(CatalogKind::Sql)
        );
        assert_eq!(
            CatalogKind::of("http://127.0.0.1:8181").ok(),
            Some(CatalogKind::Rest)
        );
        assert_eq!(
            CatalogKind::of("https://cat/api/catalog").ok(),
            Some(CatalogKind::Rest)
        );
        let err = CatalogKind::of("postgres://db")
            .expect_err("not supported")
            .to_string();
        assert!(err.contains("REST"), "{err}");
    }

    #[test]
    fn rest_properties_carry_the_options_and_the_uri() {
        let options = BTreeMap::from([
            ("warehouse".to_string(), "prod".to_string()),
            ("credential".to_string(), "id:secret".to_string()),
        ]);
        let props = rest_properties("http://cat", &options);
        assert_eq!(props["uri"], "http://cat");
        assert_eq!(props["warehouse"], "prod");
        assert_eq!(props["credential"], "id:secret");
        assert_eq!(props.len(), 3);
    }
}
