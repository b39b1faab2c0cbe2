//! The store registry on PostgreSQL: the same behaviour as on SQLite, and what only a shared
//! database has to get right (instances migrating at once, two instances binding a store's
//! edge at once, a schema newer than the binary).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use flashkart_cloud::postgres::{DatabaseUrl, Postgres};
use flashkart_cloud::registry::Registry;
use flashkart_cloud::{CloudConfig, CloudError};
use flashkart_sync::StoreConfig;

async fn sqlite_registry(dir: &std::path::Path) -> Registry {
    let mut config = StoreConfig::new(dir.join("registry.db"));
    config.extension_dir = Some(dir.join("ext"));
    Registry::open(config).await.unwrap()
}

async fn postgres_registry(url: &DatabaseUrl) -> Registry {
    Registry::open_postgres(Postgres::connect(url).await.unwrap())
        .await
        .unwrap()
}

/// Everything the registry promises, as a list of observations to compare between engines.
async fn scenario(registry: &Registry) -> Vec<String> {
    let mut seen = Vec::new();
    let first = registry.register("s1").await.unwrap();
    seen.push(format!("token prefix {}", &first[..4]));
    seen.push(format!("again: {:?}", registry.register("s1").await.err()));
    seen.push(format!(
        "bad id: {:?}",
        registry.register("../x").await.err()
    ));
    let auth = registry.authenticate(&first).await.unwrap().unwrap();
    seen.push(format!("auth {} {:?}", auth.store_id, auth.edge_site_id));
    seen.push(format!(
        "bind {:?}",
        registry.bind("s1", [1; 16]).await.unwrap()
    ));
    seen.push(format!(
        "rebind {:?}",
        registry.bind("s1", [2; 16]).await.unwrap()
    ));
    let second = registry.rotate("s1", false).await.unwrap();
    seen.push(format!(
        "old token: {:?}",
        registry.authenticate(&first).await.unwrap()
    ));
    let auth = registry.authenticate(&second).await.unwrap().unwrap();
    seen.push(format!("kept binding {:?}", auth.edge_site_id));
    let third = registry.rotate("s1", true).await.unwrap();
    let auth = registry.authenticate(&third).await.unwrap().unwrap();
    seen.push(format!("released {:?}", auth.edge_site_id));
    seen.push(format!(
        "new bind {:?}",
        registry.bind("s1", [3; 16]).await.unwrap()
    ));
    seen.push(format!(
        "unknown: {:?}",
        registry.rotate("nope", false).await.err()
    ));
    registry.register("a0").await.unwrap();
    seen.push(format!("ids {:?}", registry.store_ids().await.unwrap()));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_behaves_as_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let on_sqlite = scenario(&sqlite_registry(dir.path()).await).await;
    let on_postgres = scenario(&postgres_registry(&common::postgres::fresh_database()).await).await;
    assert_eq!(on_postgres, on_sqlite);
    assert!(
        on_sqlite.contains(&"new bind [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let url = common::postgres::fresh_database();
    let opened = futures::future::join_all((0..4).map(|_| postgres_registry(&url))).await;
    assert_eq!(opened.len(), 4);
    let pg = Postgres::connect(&url).await.unwrap();
    let rows = pg
        .client()
        .await
        .unwrap()
        .query(
            "SELECT version FROM flashkart_migrations WHERE component = 'registry'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "each migration is recorded once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_binding_at_once_agree_on_one_edge() {
    let url = common::postgres::fresh_database();
    let (a, b) = (postgres_registry(&url).await, postgres_registry(&url).await);
    a.register("s1").await.unwrap();
    let binds = (0..16_u8).map(|i| {
        let registry = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { registry.bind("s1", [i; 16]).await.unwrap() }
    });
    let bound = futures::future::join_all(binds).await;
    assert!(
        bound.iter().all(|site| *site == bound[0]),
        "every caller must be told the one site that won: {bound:?}"
    );
    assert!(matches!(
        a.bind("nope", [1; 16]).await,
        Err(CloudError::UnknownStore(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused() {
    let url = common::postgres::fresh_database();
    postgres_registry(&url).await;
    let pg = Postgres::connect(&url).await.unwrap();
    pg.client()
        .await
        .unwrap()
        .execute(
            "INSERT INTO flashkart_migrations (component, version, name) VALUES ('registry', 99, 'future')",
            &[],
        )
        .await
        .unwrap();
    let error = Registry::open_postgres(pg).await.unwrap_err().to_string();
    assert!(error.contains("newer than this binary"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_are_told_and_passwords_never_printed() {
    assert!(DatabaseUrl::parse("mysql://root@localhost/db").is_err());
    let url = DatabaseUrl::parse("postgres://app:s3cret@db.example:5432/flashkart").unwrap();
    let shown = format!("{url:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("flashkart"),
        "{shown}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cloud.toml");
    std::fs::write(&file, "database_url = \"sqlite:///tmp/x.db\"\n").unwrap();
    let error = CloudConfig::load(&file).unwrap_err().to_string();
    assert!(error.contains("postgres://"), "{error}");

    // Nothing listens on port 1: the cloud does not start, and says why.
    let mut config = common::cloud_config(dir.path());
    config.database_url = Some(DatabaseUrl::parse("postgres://postgres@127.0.0.1:1/x").unwrap());
    let Err(error) = flashkart_cloud::start(config, Default::default()).await else {
        panic!("no database, no cloud");
    };
    let error = error.to_string();
    assert!(error.contains("postgres"), "{error}");
}
