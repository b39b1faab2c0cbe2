//! The schema of a store database, the same at the edge and in the cloud's replica of it.
//!
//! Each replicated table names its owning side in [`SYNCED_TABLES`]; the SQL sits beside it in
//! [`MIGRATIONS`]. Keys are UUIDv7 text or natural keys, never AUTOINCREMENT. Quantities are
//! integers in the product's unit (pieces), weights integer grams, money integer minor units.
//! Stock is the insert-only `stock_moves` ledger: on-hand and reserved are sums, never a synced
//! number that could be overwritten.

use super::{Migration, Owner, Step, SyncedTable};

/// Every replicated table of a store database and who writes it.
pub const SYNCED_TABLES: &[SyncedTable] = &[
    // Catalog, mastered at HQ and replicated to every store.
    cloud_shared("categories"),
    cloud_shared("products"),
    cloud_shared("product_gtins"),
    cloud_shared("prices"),
    // Rosters and orders, written by the cloud into this store's replica.
    cloud_store("stores", "id"),
    cloud_store("riders", "home_store_id"),
    cloud_store("orders", "store_id"),
    cloud_store("order_lines", "store_id"),
    cloud_store("assignments", "store_id"),
    // The store's own truth.
    edge("bins"),
    edge("product_bins"),
    edge("stock_moves"),
    edge("order_progress"),
    edge("order_line_progress"),
    edge("order_events"),
    edge("assignment_replies"),
    edge("handoffs"),
    edge("deliveries"),
    edge("rider_positions"),
    edge("delivery_attempts"),
    edge("store_certificates"),
    edge("cash_handins"),
    edge("device_status"),
];

const fn cloud_shared(name: &'static str) -> SyncedTable {
    SyncedTable {
        name,
        owner: Owner::Cloud,
        column_owners: &[],
        store_column: None,
    }
}

const fn cloud_store(name: &'static str, store_column: &'static str) -> SyncedTable {
    SyncedTable {
        name,
        owner: Owner::Cloud,
        column_owners: &[],
        store_column: Some(store_column),
    }
}

const fn edge(name: &'static str) -> SyncedTable {
    SyncedTable {
        name,
        owner: Owner::Edge,
        column_owners: &[],
        store_column: Some("store_id"),
    }
}

/// Looks up a replicated table by name.
pub fn synced_table(name: &str) -> Option<&'static SyncedTable> {
    SYNCED_TABLES.iter().find(|t| t.name == name)
}

/// The migrations of a store database, oldest first. Append; never edit a released one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial store schema",
        steps: &[
            // ---- cloud-owned catalog ----
            Step::CreateCrr {
                table: "categories",
                sql: "CREATE TABLE categories (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL DEFAULT '',
                parent_id TEXT
            )",
            },
            Step::CreateCrr {
                table: "products",
                sql: "CREATE TABLE products (
                id TEXT PRIMARY KEY NOT NULL,
                sku TEXT NOT NULL DEFAULT '',
                name TEXT NOT NULL DEFAULT '',
                category_id TEXT,
                -- 'each' or 'kg' (variable measure, sold by weight)
                unit TEXT NOT NULL DEFAULT 'each',
                pack_size INTEGER NOT NULL DEFAULT 1,
                unit_weight_g INTEGER NOT NULL DEFAULT 0,
                -- item code inside restricted-circulation (prefix 20-29) EAN-13s
                plu TEXT,
                active INTEGER NOT NULL DEFAULT 1
            )",
            },
            Step::CreateCrr {
                table: "product_gtins",
                sql: "CREATE TABLE product_gtins (
                gtin TEXT PRIMARY KEY NOT NULL,
                product_id TEXT NOT NULL DEFAULT '',
                -- pieces of the product in the package this GTIN identifies
                pack_qty INTEGER NOT NULL DEFAULT 1
            )",
            },
            Step::CreateCrr {
                table: "prices",
                sql: "CREATE TABLE prices (
                product_id TEXT PRIMARY KEY NOT NULL,
                -- per piece, or per kg for variable-measure products
                unit_price_minor INTEGER NOT NULL DEFAULT 0,
                currency TEXT NOT NULL DEFAULT 'EUR'
            )",
            },
            // ---- cloud-owned, per store ----
            Step::CreateCrr {
                table: "stores",
                sql: "CREATE TABLE stores (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL DEFAULT '',
                lat REAL NOT NULL DEFAULT 0,
                lon REAL NOT NULL DEFAULT 0,
                timezone TEXT NOT NULL DEFAULT 'UTC'
            )",
            },
            Step::CreateCrr {
                table: "riders",
                sql: "CREATE TABLE riders (
                id TEXT PRIMARY KEY NOT NULL,
                home_store_id TEXT NOT NULL DEFAULT '',
                name TEXT NOT NULL DEFAULT '',
                vehicle TEXT NOT NULL DEFAULT 'bike',
                active INTEGER NOT NULL DEFAULT 1,
                -- SHA-256 of the one-time enrolment code the rider's device presents
                enrolment_code_sha256 TEXT
            )",
            },
            Step::CreateCrr {
                table: "orders",
                sql: "CREATE TABLE orders (
                id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                customer_first_name TEXT NOT NULL DEFAULT '',
                address TEXT NOT NULL DEFAULT '',
                lat REAL NOT NULL DEFAULT 0,
                lon REAL NOT NULL DEFAULT 0,
                payment_ref TEXT,
                delivery_slot TEXT,
                total_minor INTEGER NOT NULL DEFAULT 0,
                placed_at TEXT NOT NULL DEFAULT '',
                routed_at TEXT,
                cancel_requested_at TEXT,
                cancel_reason TEXT
            )",
            },
            Step::CreateCrr {
                table: "order_lines",
                sql: "CREATE TABLE order_lines (
                order_id TEXT NOT NULL,
                line_no INTEGER NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                product_id TEXT NOT NULL DEFAULT '',
                qty INTEGER NOT NULL DEFAULT 0,
                unit_price_minor INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (order_id, line_no)
            )",
            },
            Step::CreateCrr {
                table: "assignments",
                sql: "CREATE TABLE assignments (
                id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                order_id TEXT NOT NULL DEFAULT '',
                rider_id TEXT NOT NULL DEFAULT '',
                offered_at TEXT NOT NULL DEFAULT '',
                expires_at TEXT NOT NULL DEFAULT ''
            )",
            },
            // ---- edge-owned: the store's truth ----
            Step::CreateCrr {
                table: "bins",
                sql: "CREATE TABLE bins (
                id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                aisle TEXT NOT NULL DEFAULT '',
                bay TEXT NOT NULL DEFAULT '',
                shelf TEXT NOT NULL DEFAULT '',
                pick_seq INTEGER NOT NULL DEFAULT 0
            )",
            },
            Step::CreateCrr {
                table: "product_bins",
                sql: "CREATE TABLE product_bins (
                product_id TEXT NOT NULL,
                bin_id TEXT NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (product_id, bin_id)
            )",
            },
            Step::CreateCrr {
                table: "stock_moves",
                sql: "CREATE TABLE stock_moves (
                id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                product_id TEXT NOT NULL DEFAULT '',
                bin_id TEXT,
                -- signed: + into the bin (receive, release, return, found), - out of it
                qty INTEGER NOT NULL DEFAULT 0,
                -- receive | pick | adjust | count | damage | expiry | return | reserve | release
                kind TEXT NOT NULL DEFAULT '',
                lot TEXT,
                expiry TEXT,
                order_id TEXT,
                line_no INTEGER,
                reason TEXT,
                actor TEXT NOT NULL DEFAULT '',
                at TEXT NOT NULL DEFAULT ''
            )",
            },
            Step::Sql("CREATE INDEX stock_moves_by_product ON stock_moves (product_id, bin_id)"),
            Step::Sql("CREATE INDEX stock_moves_by_order ON stock_moves (order_id)"),
            Step::CreateCrr {
                table: "order_progress",
                sql: "CREATE TABLE order_progress (
                order_id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                status TEXT NOT NULL DEFAULT 'ROUTED',
                status_at TEXT NOT NULL DEFAULT '',
                tote TEXT,
                label_id TEXT,
                bags INTEGER NOT NULL DEFAULT 0,
                expected_weight_g INTEGER,
                bag_weight_g INTEGER
            )",
            },
            Step::CreateCrr {
                table: "order_line_progress",
                sql: "CREATE TABLE order_line_progress (
                order_id TEXT NOT NULL,
                line_no INTEGER NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                picked_qty INTEGER NOT NULL DEFAULT 0,
                picked_weight_g INTEGER NOT NULL DEFAULT 0,
                short_qty INTEGER NOT NULL DEFAULT 0,
                substitute_product_id TEXT,
                PRIMARY KEY (order_id, line_no)
            )",
            },
            Step::CreateCrr {
                table: "order_events",
                sql: "CREATE TABLE order_events (
                id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                order_id TEXT NOT NULL DEFAULT '',
                from_status TEXT,
                to_status TEXT NOT NULL DEFAULT '',
                actor TEXT NOT NULL DEFAULT '',
                at TEXT NOT NULL DEFAULT '',
                note TEXT
            )",
            },
            Step::Sql("CREATE INDEX order_events_by_order ON order_events (order_id, at)"),
            Step::CreateCrr {
                table: "assignment_replies",
                sql: "CREATE TABLE assignment_replies (
                assignment_id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                rider_id TEXT NOT NULL DEFAULT '',
                -- accepted | declined | expired
                reply TEXT NOT NULL DEFAULT '',
                at TEXT NOT NULL DEFAULT ''
            )",
            },
            Step::CreateCrr {
                table: "handoffs",
                sql: "CREATE TABLE handoffs (
                order_id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                rider_id TEXT NOT NULL DEFAULT '',
                label_id TEXT NOT NULL DEFAULT '',
                at TEXT NOT NULL DEFAULT ''
            )",
            },
            Step::CreateCrr {
                table: "deliveries",
                sql: "CREATE TABLE deliveries (
                order_id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                rider_id TEXT NOT NULL DEFAULT '',
                at TEXT NOT NULL DEFAULT '',
                lat REAL,
                lon REAL,
                customer_pin_ok INTEGER
            )",
            },
            Step::CreateCrr {
                table: "rider_positions",
                sql: "CREATE TABLE rider_positions (
                rider_id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                lat REAL NOT NULL DEFAULT 0,
                lon REAL NOT NULL DEFAULT 0,
                accuracy_m REAL,
                at TEXT NOT NULL DEFAULT ''
            )",
            },
        ],
    },
    Migration {
        version: 2,
        name: "edge local state: staff, sessions, stock summary",
        // Local to the store, never replicated (plain tables, not CRRs): staff PIN hashes and
        // sign-in sessions stay on the premises, and the stock summary is a cache of the
        // `stock_moves` ledger that the edge rebuilds from it at every start.
        steps: &[
            Step::Sql(
                "CREATE TABLE staff (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL DEFAULT '',
                -- picker | lead | manager
                role TEXT NOT NULL DEFAULT 'picker',
                -- argon2id PHC string of the PIN
                pin_hash TEXT NOT NULL DEFAULT '',
                active INTEGER NOT NULL DEFAULT 1,
                created_at TEXT NOT NULL DEFAULT ''
            )",
            ),
            Step::Sql(
                "CREATE TABLE staff_sessions (
                token_sha256 TEXT PRIMARY KEY NOT NULL,
                staff_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                expires_at TEXT NOT NULL
            )",
            ),
            // On hand per product, bin and lot (physical moves only).
            Step::Sql(
                "CREATE TABLE stock_lots (
                product_id TEXT NOT NULL,
                bin_id TEXT NOT NULL,
                lot TEXT NOT NULL,
                expiry TEXT NOT NULL DEFAULT '',
                on_hand INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (product_id, bin_id, lot)
            ) WITHOUT ROWID",
            ),
            // Held per order line and product (reserve and release moves with an order).
            Step::Sql(
                "CREATE TABLE order_holds (
                order_id TEXT NOT NULL,
                line_no INTEGER NOT NULL,
                product_id TEXT NOT NULL,
                held INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (order_id, line_no, product_id)
            ) WITHOUT ROWID",
            ),
            // Reserved per product (reserve and release moves).
            Step::Sql(
                "CREATE TABLE stock_reserved (
                product_id TEXT PRIMARY KEY NOT NULL,
                reserved INTEGER NOT NULL DEFAULT 0
            ) WITHOUT ROWID",
            ),
        ],
    },
    Migration {
        version: 3,
        name: "edge riders: certificates, used enrolment codes, revocations",
        // Local to the store, never replicated: the store CA's issued certificates, the one-time
        // enrolment codes already spent (the roster's code hash is cloud-owned, so the edge cannot
        // clear it), and riders whose access this store has revoked.
        steps: &[
            Step::Sql(
                "CREATE TABLE rider_certs (
                serial TEXT PRIMARY KEY NOT NULL,
                rider_id TEXT NOT NULL,
                issued_at TEXT NOT NULL,
                not_after TEXT NOT NULL,
                revoked_at TEXT
            )",
            ),
            Step::Sql("CREATE INDEX rider_certs_by_rider ON rider_certs (rider_id)"),
            Step::Sql(
                "CREATE TABLE rider_enrolment_codes_used (
                code_sha256 TEXT PRIMARY KEY NOT NULL,
                rider_id TEXT NOT NULL,
                used_at TEXT NOT NULL
            )",
            ),
            Step::Sql(
                "CREATE TABLE rider_revocations (
                rider_id TEXT PRIMARY KEY NOT NULL,
                revoked_at TEXT NOT NULL,
                reason TEXT NOT NULL DEFAULT ''
            )",
            ),
        ],
    },
    Migration {
        version: 4,
        name: "enrolment code expiry; delivery PIN hash, contactless, delivery attempts, photo",
        steps: &[
            // cloud-owned (riders): when the enrolment code HQ issued stops working
            Step::AlterCrr {
                table: "riders",
                sql: "ALTER TABLE riders ADD COLUMN enrolment_code_expires_at TEXT",
            },
            // cloud-owned (orders): SHA-256 hex of `order_id || ':' || pin`; the PIN itself
            // stays with the cloud
            Step::AlterCrr {
                table: "orders",
                sql: "ALTER TABLE orders ADD COLUMN delivery_pin_sha256 TEXT",
            },
            // cloud-owned (orders): 1 when the customer asked for a photo instead of a PIN
            Step::AlterCrr {
                table: "orders",
                sql: "ALTER TABLE orders ADD COLUMN contactless INTEGER NOT NULL DEFAULT 0",
            },
            // edge-owned: every delivery PIN the store judged wrong (or a refused attempt on a
            // locked order); three wrong ones lock the order for support
            Step::CreateCrr {
                table: "delivery_attempts",
                sql: "CREATE TABLE delivery_attempts (
                id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                order_id TEXT NOT NULL DEFAULT '',
                rider_id TEXT NOT NULL DEFAULT '',
                at TEXT NOT NULL DEFAULT '',
                -- wrong_pin | locked
                outcome TEXT NOT NULL DEFAULT ''
            )",
            },
            Step::Sql("CREATE INDEX delivery_attempts_by_order ON delivery_attempts (order_id)"),
            // edge-owned (deliveries): the photo a contactless delivery was proven with
            Step::AlterCrr {
                table: "deliveries",
                sql: "ALTER TABLE deliveries ADD COLUMN photo_ref TEXT",
            },
        ],
    },
    Migration {
        version: 5,
        name: "store certificates: the riders' CA fingerprint HQ pins in enrolment QR codes",
        steps: &[
            // edge-owned: the certificates the store's own CA made, as their SHA-256 (of the
            // DER); `id` says what it is for (`riders-ca`). HQ puts the riders' CA fingerprint
            // in each enrolment QR code, so the phone can trust the store's HTTPS listener
            // before it has a certificate of its own.
            Step::CreateCrr {
                table: "store_certificates",
                sql: "CREATE TABLE store_certificates (
                id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                sha256 TEXT NOT NULL DEFAULT '',
                updated_at TEXT NOT NULL DEFAULT ''
            )",
            },
        ],
    },
    Migration {
        version: 6,
        name: "cash on delivery: payment method and cash due, cash collected, cash hand-ins",
        steps: &[
            // cloud-owned (orders): 'card' or 'cash'; an order from before this is paid by card
            Step::AlterCrr {
                table: "orders",
                sql: "ALTER TABLE orders ADD COLUMN payment_method TEXT NOT NULL DEFAULT 'card'",
            },
            // cloud-owned (orders): what the rider collects at the door of a cash order, in
            // minor units of `currency`; 0 for a card order
            Step::AlterCrr {
                table: "orders",
                sql: "ALTER TABLE orders ADD COLUMN cash_due_minor INTEGER NOT NULL DEFAULT 0",
            },
            // cloud-owned (orders): ISO 4217 code of total_minor and cash_due_minor; '' when the
            // writer did not say (orders from before this)
            Step::AlterCrr {
                table: "orders",
                sql: "ALTER TABLE orders ADD COLUMN currency TEXT NOT NULL DEFAULT ''",
            },
            // edge-owned (deliveries): what the rider says it collected at the door; NULL for a
            // card order
            Step::AlterCrr {
                table: "deliveries",
                sql: "ALTER TABLE deliveries ADD COLUMN cash_collected_minor INTEGER",
            },
            // edge-owned (deliveries): the hand-in that covered this delivery's cash; NULL while
            // the rider still holds it. Marking the rows, rather than comparing times, keeps the
            // expected amount exact whatever the phones' clocks said (`at` is the rider's fix).
            Step::AlterCrr {
                table: "deliveries",
                sql: "ALTER TABLE deliveries ADD COLUMN cash_handin_id TEXT",
            },
            Step::Sql("CREATE INDEX deliveries_by_rider ON deliveries (rider_id, cash_handin_id)"),
            // edge-owned: cash a rider handed in at the store, and what the store expected
            // (the cash of the deliveries it covers); HQ flags the difference
            Step::CreateCrr {
                table: "cash_handins",
                sql: "CREATE TABLE cash_handins (
                id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                rider_id TEXT NOT NULL DEFAULT '',
                at TEXT NOT NULL DEFAULT '',
                amount_minor INTEGER NOT NULL DEFAULT 0,
                expected_minor INTEGER NOT NULL DEFAULT 0,
                currency TEXT NOT NULL DEFAULT '',
                -- the member of staff who took the cash
                staff_id TEXT NOT NULL DEFAULT '',
                note TEXT
            )",
            },
            Step::Sql("CREATE INDEX cash_handins_by_rider ON cash_handins (rider_id, at)"),
            // Local to the store, never replicated: riders whose shift a hand-in closed here.
            // While listed, the riders' broker treats the rider as off shift (refused at
            // CONNECT, no offers); a lead signing the rider on again deletes the row.
            Step::Sql(
                "CREATE TABLE rider_sign_offs (
                rider_id TEXT PRIMARY KEY NOT NULL,
                signed_off_at TEXT NOT NULL,
                handin_id TEXT,
                staff_id TEXT NOT NULL DEFAULT ''
            )",
            ),
        ],
    },
    Migration {
        version: 7,
        name: "device status: each device's health and faults as the store sees them",
        steps: &[
            // edge-owned: one row per configured scanner, scale and printer, written when its
            // health or its faults change (not on every status poll), so HQ sees a store's
            // hardware as the store does. A device removed from the configuration is deleted.
            Step::CreateCrr {
                table: "device_status",
                sql: "CREATE TABLE device_status (
                device_id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL DEFAULT '',
                -- 'scanner', 'scale' or 'printer'
                kind TEXT NOT NULL DEFAULT '',
                -- 'connecting', 'connected', 'disconnected' or 'unhealthy'
                health TEXT NOT NULL DEFAULT 'connecting',
                -- why it is disconnected or unhealthy; '' otherwise
                reason TEXT NOT NULL DEFAULT '',
                -- a printer's faults ('paper out', ...), comma-separated; '' when none
                faults TEXT NOT NULL DEFAULT '',
                changed_at TEXT NOT NULL DEFAULT ''
            )",
            },
        ],
    },
    Migration {
        version: 8,
        name: "assignments by order: one rider per order is checked on every acceptance",
        steps: &[
            // Local, like every index: the store refuses a second acceptance of an order and
            // keeps offers of a taken order off the phones, each a lookup by order.
            Step::Sql("CREATE INDEX assignments_by_order ON assignments (order_id)"),
        ],
    },
];
