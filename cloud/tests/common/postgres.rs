//! Databases on the machine's PostgreSQL for tests: each test gets its own, so tests run in
//! parallel without seeing each other's rows. `FLASHKART_TEST_POSTGRES` names the server
//! (default `postgres://postgres@127.0.0.1:5432/postgres`, trust auth as on CI); with
//! `FLASHKART_TEST_BACKEND=postgres` every cloud the tests start keeps its shared data there
//! instead of in SQLite files (`scripts/test` runs the cloud's suite both ways).

use flashkart_cloud::postgres::DatabaseUrl;

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Whether this run puts the clouds on PostgreSQL.
pub fn backend_is_postgres() -> bool {
    std::env::var("FLASHKART_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The database of the test working in `dir`: created on first use and named in
/// `dir/postgres_url`, so a cloud restarted on the same directory finds its data again.
pub fn database_for(dir: &std::path::Path) -> DatabaseUrl {
    let file = dir.join("postgres_url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return DatabaseUrl::parse(url.trim()).expect("postgres_url");
    }
    let url = fresh_database();
    std::fs::create_dir_all(dir).expect("test dir");
    std::fs::write(&file, url.expose()).expect("writing postgres_url");
    url
}

/// A new, empty database for one test; its URL. Databases are named `fk_test_*` and
/// `scripts/test` drops those left by earlier runs before the PostgreSQL pass.
pub fn fresh_database() -> DatabaseUrl {
    let server =
        std::env::var("FLASHKART_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
    let name = format!("fk_test_{}", uuid::Uuid::now_v7().simple());
    let admin = server.clone();
    let create = format!("CREATE DATABASE {name}");
    // A thread with its own runtime: callers may be inside a runtime, where blocking on a
    // future is not allowed.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL at {admin} is needed by the cloud's tests ({e}); set \
                         FLASHKART_TEST_POSTGRES to a server where this user may create \
                         databases"
                    )
                });
            let driver = tokio::spawn(connection);
            client
                .batch_execute(&create)
                .await
                .expect("CREATE DATABASE");
            drop(client);
            let _ = driver.await;
        });
    })
    .join()
    .expect("creating the test database");
    let mut url = server
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .expect("FLASHKART_TEST_POSTGRES ends with /database");
    url.push('/');
    url.push_str(&name);
    DatabaseUrl::parse(&url).expect("test database URL")
}
