//! The read model's tables, in SQLite (`MIGRATIONS`) and in PostgreSQL (`PG_MIGRATIONS`).
//! Plain tables, not CRRs: the read model is the cloud's own and is rebuilt from the
//! replicas, never synced.

use flashkart_sync::schema::{Migration, Step};

use crate::postgres;

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "read model",
        steps: &[
            Step::Sql(
                "CREATE TABLE rm_orders (
                id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL,
                customer_id TEXT,
                status TEXT NOT NULL,
                status_at TEXT NOT NULL,
                placed_at TEXT NOT NULL,
                -- when the order should be at the door (placed + SLA), RFC 3339
                promised_at TEXT,
                total_minor INTEGER NOT NULL DEFAULT 0,
                delivery_fee_minor INTEGER NOT NULL DEFAULT 0,
                lat REAL NOT NULL DEFAULT 0,
                lon REAL NOT NULL DEFAULT 0,
                -- 1 until picked up, delivered or cancelled: the store's backlog
                open INTEGER NOT NULL DEFAULT 1
            )",
            ),
            Step::Sql("CREATE INDEX rm_orders_open ON rm_orders (store_id) WHERE open = 1"),
            Step::Sql(
                "CREATE TABLE rm_timeline (
                event_id TEXT PRIMARY KEY NOT NULL,
                order_id TEXT NOT NULL,
                store_id TEXT NOT NULL,
                from_status TEXT,
                status TEXT NOT NULL,
                at TEXT NOT NULL,
                actor TEXT NOT NULL DEFAULT '',
                -- 'cloud' or 'edge'
                source TEXT NOT NULL,
                note TEXT
            )",
            ),
            Step::Sql("CREATE INDEX rm_timeline_by_order ON rm_timeline (order_id, at)"),
            Step::Sql("CREATE INDEX rm_timeline_by_status ON rm_timeline (status, at)"),
            Step::Sql(
                "CREATE TABLE rm_stock (
                store_id TEXT NOT NULL,
                product_id TEXT NOT NULL,
                on_hand INTEGER NOT NULL DEFAULT 0,
                reserved INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (store_id, product_id)
            ) WITHOUT ROWID",
            ),
            Step::Sql("CREATE TABLE rm_moves (id TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID"),
            Step::Sql(
                "CREATE TABLE rm_riders (
                rider_id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL,
                lat REAL NOT NULL,
                lon REAL NOT NULL,
                at TEXT NOT NULL
            )",
            ),
            Step::Sql(
                "CREATE TABLE rm_short_lines (
                order_id TEXT NOT NULL,
                line_no INTEGER NOT NULL,
                store_id TEXT NOT NULL,
                short_qty INTEGER NOT NULL,
                PRIMARY KEY (order_id, line_no, store_id)
            ) WITHOUT ROWID",
            ),
        ],
    },
    Migration {
        version: 2,
        name: "rider offers and replies",
        steps: &[
            Step::Sql(
                "CREATE TABLE rm_offers (
                    assignment_id TEXT PRIMARY KEY NOT NULL,
                    store_id TEXT NOT NULL,
                    order_id TEXT NOT NULL,
                    rider_id TEXT NOT NULL,
                    offered_at TEXT NOT NULL,
                    expires_at TEXT NOT NULL
                )",
            ),
            Step::Sql("CREATE INDEX rm_offers_by_order ON rm_offers (order_id)"),
            Step::Sql(
                "CREATE TABLE rm_replies (
                    assignment_id TEXT PRIMARY KEY NOT NULL,
                    store_id TEXT NOT NULL,
                    rider_id TEXT NOT NULL,
                    -- accepted | declined | expired
                    reply TEXT NOT NULL,
                    at TEXT NOT NULL
                )",
            ),
        ],
    },
    Migration {
        version: 3,
        name: "projection cursors",
        steps: &[Step::Sql(
            "CREATE TABLE rm_cursors (
                store_id TEXT NOT NULL,
                -- the origin (site id) whose changes in the store's replica are followed
                origin BLOB NOT NULL,
                -- the origin's changes up to this db_version are projected
                db_version INTEGER NOT NULL,
                PRIMARY KEY (store_id, origin)
            ) WITHOUT ROWID",
        )],
    },
    Migration {
        version: 4,
        name: "dashboard indexes",
        // The HQ dashboard reads open and recently finished orders, the last 24 hours of
        // placements and the last hour of offers and replies every few seconds; without these
        // each read would scan tables that grow with every order ever taken.
        steps: &[
            Step::Sql("CREATE INDEX rm_orders_by_status ON rm_orders (status, status_at)"),
            Step::Sql("CREATE INDEX rm_orders_by_placed ON rm_orders (placed_at)"),
            Step::Sql("CREATE INDEX rm_offers_by_time ON rm_offers (offered_at)"),
            Step::Sql("CREATE INDEX rm_replies_by_time ON rm_replies (at)"),
        ],
    },
    Migration {
        version: 5,
        name: "store devices and sync lag",
        steps: &[
            // Each store's devices as its `device_status` rows say (health and faults).
            Step::Sql(
                "CREATE TABLE rm_devices (
                    store_id TEXT NOT NULL,
                    device_id TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    health TEXT NOT NULL,
                    reason TEXT NOT NULL DEFAULT '',
                    faults TEXT NOT NULL DEFAULT '',
                    changed_at TEXT NOT NULL,
                    PRIMARY KEY (store_id, device_id)
                ) WITHOUT ROWID",
            ),
            // How late a store's facts reach the read model: for the latest projection step
            // that carried a timestamped fact (an order event, a rider's reply, a device
            // change), the newest fact's time at the store and when it was projected here.
            Step::Sql(
                "CREATE TABLE rm_store_sync (
                    store_id TEXT PRIMARY KEY NOT NULL,
                    fact_at TEXT NOT NULL,
                    projected_at TEXT NOT NULL,
                    lag_ms INTEGER NOT NULL
                )",
            ),
        ],
    },
    Migration {
        version: 6,
        name: "orders by customer",
        // A customer's order history, newest first, without reading every order.
        steps: &[Step::Sql(
            "CREATE INDEX rm_orders_by_customer ON rm_orders (customer_id, placed_at)",
        )],
    },
    Migration {
        version: 7,
        name: "notification outbox",
        // Written in the same transactions as the orders and events that cause them.
        steps: &[Step::Sql(crate::notify::SCHEMA)],
    },
    Migration {
        version: 8,
        name: "dispatcher state",
        // Live dispatch's pending offers and refusals as rows, so a restart forgets neither.
        steps: &[Step::Sql(crate::dispatch::durable::SCHEMA)],
    },
    Migration {
        version: 9,
        name: "what HQ reads of a store at any instance",
        // The facts HQ's order detail, support view and enrolment codes used to read from a
        // store's replica, which is right only at the instance holding the store: wrong
        // delivery PINs, the riders' CA fingerprint, and each order's lines at each store it
        // was routed to with their progress.
        steps: &[
            Step::Sql(
                "CREATE TABLE rm_pin_attempts (
                    id TEXT PRIMARY KEY NOT NULL,
                    order_id TEXT NOT NULL,
                    store_id TEXT NOT NULL,
                    rider_id TEXT NOT NULL,
                    -- wrong_pin | locked
                    outcome TEXT NOT NULL,
                    at TEXT NOT NULL
                )",
            ),
            Step::Sql("CREATE INDEX rm_pin_attempts_by_order ON rm_pin_attempts (order_id)"),
            Step::Sql(
                "CREATE TABLE rm_store_certificates (
                    store_id TEXT NOT NULL,
                    -- what the certificate is for (`riders-ca`)
                    id TEXT NOT NULL,
                    -- 64 lowercase hex digits
                    sha256 TEXT NOT NULL,
                    updated_at TEXT NOT NULL,
                    PRIMARY KEY (store_id, id)
                ) WITHOUT ROWID",
            ),
            Step::Sql(
                "CREATE TABLE rm_order_lines (
                    order_id TEXT NOT NULL,
                    store_id TEXT NOT NULL,
                    line_no INTEGER NOT NULL,
                    product_id TEXT NOT NULL,
                    qty INTEGER NOT NULL,
                    unit_price_minor INTEGER NOT NULL,
                    picked_qty INTEGER NOT NULL DEFAULT 0,
                    short_qty INTEGER NOT NULL DEFAULT 0,
                    substitute_product_id TEXT,
                    PRIMARY KEY (order_id, store_id, line_no)
                ) WITHOUT ROWID",
            ),
            // Projected again from the start, so the new tables get what stores reported
            // before them (folding by keys makes the rest of it no change).
            Step::Sql("DELETE FROM rm_cursors"),
        ],
    },
];

/// The same tables in PostgreSQL, where every instance's projector writes the stores it holds
/// and every instance reads all of them. The first migration is the read model as it came to
/// PostgreSQL whole; later ones follow SQLite's. Integers are BIGINT (Rust's i64 on both engines), times the same RFC 3339 text as
/// in SQLite so they compare the same way. Two differences: the timeline and the replies have
/// an insertion counter where SQLite reads them in rowid order, and a cursor also names the replica it was read
/// from (its site id), since each instance keeps its own replica of a store and positions in
/// one mean nothing in another: a store that moves is projected again from the start of the
/// new replica, which folding by keys makes harmless.
pub(crate) const PG_MIGRATIONS: &[postgres::Migration] = &[
    postgres::Migration {
        version: 1,
        name: "read model",
        sql: "
    CREATE TABLE rm_orders (
        id TEXT PRIMARY KEY NOT NULL,
        store_id TEXT NOT NULL,
        customer_id TEXT,
        status TEXT NOT NULL,
        status_at TEXT NOT NULL,
        placed_at TEXT NOT NULL,
        promised_at TEXT,
        total_minor BIGINT NOT NULL DEFAULT 0,
        delivery_fee_minor BIGINT NOT NULL DEFAULT 0,
        lat DOUBLE PRECISION NOT NULL DEFAULT 0,
        lon DOUBLE PRECISION NOT NULL DEFAULT 0,
        open BIGINT NOT NULL DEFAULT 1
    );
    CREATE INDEX rm_orders_open ON rm_orders (store_id) WHERE open = 1;
    CREATE INDEX rm_orders_by_status ON rm_orders (status, status_at);
    CREATE INDEX rm_orders_by_placed ON rm_orders (placed_at);
    CREATE INDEX rm_orders_by_customer ON rm_orders (customer_id, placed_at);
    CREATE TABLE rm_timeline (
        event_id TEXT PRIMARY KEY NOT NULL,
        order_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        from_status TEXT,
        status TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        note TEXT,
        -- insertion order, for ties in `at` (SQLite's rowid)
        seq BIGINT GENERATED ALWAYS AS IDENTITY
    );
    CREATE INDEX rm_timeline_by_order ON rm_timeline (order_id, at);
    CREATE INDEX rm_timeline_by_status ON rm_timeline (status, at);
    CREATE TABLE rm_stock (
        store_id TEXT NOT NULL,
        product_id TEXT NOT NULL,
        on_hand BIGINT NOT NULL DEFAULT 0,
        reserved BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (store_id, product_id)
    );
    CREATE INDEX rm_stock_by_product ON rm_stock (product_id);
    CREATE TABLE rm_moves (id TEXT PRIMARY KEY NOT NULL);
    CREATE TABLE rm_riders (
        rider_id TEXT PRIMARY KEY NOT NULL,
        store_id TEXT NOT NULL,
        lat DOUBLE PRECISION NOT NULL,
        lon DOUBLE PRECISION NOT NULL,
        at TEXT NOT NULL
    );
    CREATE TABLE rm_short_lines (
        order_id TEXT NOT NULL,
        line_no BIGINT NOT NULL,
        store_id TEXT NOT NULL,
        short_qty BIGINT NOT NULL,
        PRIMARY KEY (order_id, line_no, store_id)
    );
    CREATE TABLE rm_offers (
        assignment_id TEXT PRIMARY KEY NOT NULL,
        store_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        rider_id TEXT NOT NULL,
        offered_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX rm_offers_by_order ON rm_offers (order_id);
    CREATE INDEX rm_offers_by_time ON rm_offers (offered_at);
    CREATE TABLE rm_replies (
        assignment_id TEXT PRIMARY KEY NOT NULL,
        store_id TEXT NOT NULL,
        rider_id TEXT NOT NULL,
        reply TEXT NOT NULL,
        at TEXT NOT NULL,
        -- arrival order, which dispatch reads replies in (SQLite's rowid)
        seq BIGINT GENERATED ALWAYS AS IDENTITY
    );
    CREATE INDEX rm_replies_by_time ON rm_replies (at);
    CREATE TABLE rm_cursors (
        store_id TEXT NOT NULL,
        -- the site id of the replica the changes were read from (one per instance)
        replica BYTEA NOT NULL,
        origin BYTEA NOT NULL,
        db_version BIGINT NOT NULL,
        PRIMARY KEY (store_id, replica, origin)
    );
    CREATE TABLE rm_devices (
        store_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        health TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        faults TEXT NOT NULL DEFAULT '',
        changed_at TEXT NOT NULL,
        PRIMARY KEY (store_id, device_id)
    );
    CREATE TABLE rm_store_sync (
        store_id TEXT PRIMARY KEY NOT NULL,
        fact_at TEXT NOT NULL,
        projected_at TEXT NOT NULL,
        lag_ms BIGINT NOT NULL
    );
    CREATE TABLE rm_dispatch_pending (
        store_id TEXT NOT NULL,
        rider_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        assignment_id TEXT NOT NULL UNIQUE,
        PRIMARY KEY (store_id, rider_id, seq)
    );
    CREATE TABLE rm_dispatch_refusals (
        order_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        rider_id TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (order_id, store_id, rider_id)
    );
    ",
    },
    postgres::Migration {
        version: 2,
        name: "what HQ reads of a store at any instance",
        // SQLite's migration 9: wrong delivery PINs, the riders' CA fingerprint and each
        // order's lines per store, which HQ read from the store's replica before.
        sql: "
    CREATE TABLE rm_pin_attempts (
        id TEXT PRIMARY KEY NOT NULL,
        order_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        rider_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX rm_pin_attempts_by_order ON rm_pin_attempts (order_id);
    CREATE TABLE rm_store_certificates (
        store_id TEXT NOT NULL,
        id TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (store_id, id)
    );
    CREATE TABLE rm_order_lines (
        order_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        line_no BIGINT NOT NULL,
        product_id TEXT NOT NULL,
        qty BIGINT NOT NULL,
        unit_price_minor BIGINT NOT NULL,
        picked_qty BIGINT NOT NULL DEFAULT 0,
        short_qty BIGINT NOT NULL DEFAULT 0,
        substitute_product_id TEXT,
        PRIMARY KEY (order_id, store_id, line_no)
    );
    -- projected again from the start, so the new tables get what stores reported before them
    DELETE FROM rm_cursors;
    ",
    },
];
