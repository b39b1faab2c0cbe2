//! Posting, idempotency, refusals and balances against a real (in-memory) SQLite; the
//! builders' and statements' own tests live next to them and share these helpers.

use proptest::prelude::*;
use rusqlite::Connection;

use super::*;

/// A fresh ledger database.
pub(crate) fn db() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    for sql in TABLES {
        conn.execute_batch(sql).unwrap();
    }
    conn
}

/// 2026-03-01 10:mm:00.000Z.
pub(crate) fn at(minute: u32) -> String {
    format!("2026-03-01T10:{minute:02}:00.000Z")
}

/// A delivered order for `order_id` of store s1, rider r1, customer c-<order>.
pub(crate) fn delivered(order_id: &str, items: i64, fee: i64, when: &str) -> Transaction {
    let customer = format!("c-{order_id}");
    order_delivered(
        &OrderDelivered {
            order_id,
            customer_id: &customer,
            store_id: "s1",
            rider_id: "r1",
            currency: "EUR",
            at: when,
            items_minor: items,
            discount_minor: 0,
            delivery_fee_minor: fee,
        },
        &Economics::default(),
    )
    .unwrap()
}

/// Rows in (ledger_transactions, ledger_entries).
fn rows(conn: &Connection) -> (i64, i64) {
    let count = |table: &str| {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
    };
    (count("ledger_transactions"), count("ledger_entries"))
}

fn balance_of(conn: &Connection, account: Account) -> i64 {
    balance(conn, &account, "EUR").unwrap()
}

#[test]
fn the_schema_batch_creates_what_the_statements_create() {
    let objects = |conn: &Connection| -> Vec<(String, String)> {
        conn.prepare("SELECT type, name FROM sqlite_master ORDER BY name")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let batch = Connection::open_in_memory().unwrap();
    batch.execute_batch(SCHEMA).unwrap();
    assert_eq!(objects(&batch), objects(&db()));
    // And the automatic indexes of ledger_transactions' primary and idempotency keys.
    assert_eq!(objects(&batch).len(), TABLES.len() + 2);
}

#[test]
fn posting_twice_is_already_posted_and_changes_nothing() {
    let conn = db();
    let first = delivered("o1", 10_000, 400, &at(0));
    assert_eq!(post(&conn, &first).unwrap(), Posted::New);
    let before = (rows(&conn), balances(&conn, "EUR").unwrap());
    assert_eq!(post(&conn, &first).unwrap(), Posted::AlreadyPosted);
    // A retry after a crash rebuilds the event: new id, later time, a memo.
    let retry = delivered("o1", 10_000, 400, &at(5)).with_memo("retried");
    assert_ne!(retry.id, first.id);
    assert_eq!(post(&conn, &retry).unwrap(), Posted::AlreadyPosted);
    assert_eq!((rows(&conn), balances(&conn, "EUR").unwrap()), before);
    let stored_id: String = conn
        .query_row("SELECT id FROM ledger_transactions", [], |row| row.get(0))
        .unwrap();
    assert_eq!(stored_id, first.id);
}

#[test]
fn the_same_key_with_other_money_is_a_conflict_and_writes_nothing() {
    let conn = db();
    post(&conn, &delivered("o1", 10_000, 400, &at(0))).unwrap();
    let before = (rows(&conn), balances(&conn, "EUR").unwrap());
    let other = delivered("o1", 9_000, 400, &at(0));
    match post(&conn, &other) {
        Err(LedgerError::Conflict { key, reason }) => {
            assert_eq!(key, "order_delivered:o1");
            assert!(reason.starts_with("entries"), "{reason}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let mut other_currency = delivered("o1", 10_000, 400, &at(0));
    other_currency.currency = "INR".into();
    assert!(matches!(
        post(&conn, &other_currency),
        Err(LedgerError::Conflict { .. })
    ));
    assert_eq!((rows(&conn), balances(&conn, "EUR").unwrap()), before);
    assert!(balances(&conn, "INR").unwrap().is_empty());
}

#[test]
fn invalid_transactions_are_refused_before_anything_is_written() {
    let conn = db();
    let good = delivered("o1", 10_000, 400, &at(0));
    let with = |change: &dyn Fn(&mut Transaction)| {
        let mut transaction = good.clone();
        change(&mut transaction);
        post(&conn, &transaction)
    };
    let entry = |key: &str, amount_minor| Entry {
        account: Account::parse(key).unwrap(),
        amount_minor,
    };
    assert!(matches!(
        with(&|t| t.entries[0].amount_minor += 1),
        Err(LedgerError::Unbalanced { sum_minor: 1, .. })
    ));
    // Would wrap to exactly zero without checked sums.
    assert!(matches!(
        with(&|t| t.entries = vec![
            entry("refunds", i64::MAX),
            entry("refunds", i64::MAX),
            entry("gateway_clearing", 2),
        ]),
        Err(LedgerError::Overflow(_))
    ));
    for currency in ["eur", "EURO", "E1R", "", "ÉUR"] {
        assert!(
            matches!(
                with(&|t| t.currency = currency.into()),
                Err(LedgerError::InvalidCurrency(_))
            ),
            "{currency}"
        );
    }
    let too_much = MAX_AMOUNT_MINOR + 1;
    assert!(matches!(
        with(&|t| t.entries = vec![
            entry("refunds", too_much),
            entry("gateway_clearing", -too_much)
        ]),
        Err(LedgerError::InvalidAmount(_))
    ));
    assert!(matches!(
        with(&|t| t.entries.push(entry("refunds", 0))),
        Err(LedgerError::InvalidAmount(_))
    ));
    assert!(matches!(
        with(&|t| t.entries.truncate(1)),
        Err(LedgerError::InvalidAmount(_))
    ));
    assert!(matches!(
        with(&|t| t.entries[0].account = Account::Customer("has space".into())),
        Err(LedgerError::InvalidAccount(_))
    ));
    type Change = Box<dyn Fn(&mut Transaction)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "at",
            Box::new(|t: &mut Transaction| t.at = "2026-03-01T10:00:00Z".into()),
        ),
        (
            "at",
            Box::new(|t: &mut Transaction| t.at = "2026-03-01T11:00:00.000+01:00".into()),
        ),
        (
            "id",
            Box::new(|t: &mut Transaction| t.id = "550e8400-e29b-41d4-a716-446655440000".into()),
        ),
        (
            "id",
            Box::new(|t: &mut Transaction| t.id = t.id.to_uppercase()),
        ),
        (
            "idempotency key",
            Box::new(|t: &mut Transaction| t.idempotency_key = "card_captured:o1".into()),
        ),
        (
            "idempotency key",
            Box::new(|t: &mut Transaction| t.idempotency_key = "order_delivered:".into()),
        ),
        (
            "memo",
            Box::new(|t: &mut Transaction| t.memo = Some("bell\u{7}".into())),
        ),
        (
            "memo",
            Box::new(|t: &mut Transaction| t.memo = Some("x".repeat(MAX_MEMO_LEN + 1))),
        ),
        (
            "store_id",
            Box::new(|t: &mut Transaction| t.store_id = Some("s:1".into())),
        ),
    ];
    for (what, change) in cases {
        match with(&*change) {
            Err(LedgerError::Invalid { what: got, .. }) => assert_eq!(got, what),
            other => panic!("{what}: expected invalid, got {other:?}"),
        }
    }
    assert_eq!(rows(&conn), (0, 0));
    assert_eq!(post(&conn, &good).unwrap(), Posted::New);
}

#[test]
fn a_failed_posting_leaves_nothing_inside_the_callers_transaction() {
    let conn = db();
    conn.execute_batch(
        "CREATE TABLE payments (order_id TEXT);
         CREATE TEMP TRIGGER fail_second_line BEFORE INSERT ON ledger_entries
             WHEN NEW.line_no = 2 BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;
         BEGIN;
         INSERT INTO payments VALUES ('o1');",
    )
    .unwrap();
    assert!(matches!(
        post(&conn, &delivered("o1", 10_000, 400, &at(0))),
        Err(LedgerError::Sql(_))
    ));
    conn.execute_batch("COMMIT").unwrap();
    assert_eq!(rows(&conn), (0, 0));
    let payments: i64 = conn
        .query_row("SELECT COUNT(*) FROM payments", [], |row| row.get(0))
        .unwrap();
    assert_eq!(payments, 1);
    // And a posting rolled back by its caller is gone too.
    conn.execute_batch("DROP TRIGGER fail_second_line; BEGIN")
        .unwrap();
    post(&conn, &delivered("o1", 10_000, 400, &at(0))).unwrap();
    conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(rows(&conn), (0, 0));
}

#[test]
fn the_ledger_is_append_only() {
    let conn = db();
    post(&conn, &delivered("o1", 10_000, 400, &at(0))).unwrap();
    for sql in [
        "UPDATE ledger_entries SET amount_minor = amount_minor * 2",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET memo = 'edited'",
        "DELETE FROM ledger_transactions",
    ] {
        assert!(conn.execute(sql, []).is_err(), "{sql}");
    }
    assert_eq!(rows(&conn), (1, 6));
}

#[test]
fn a_realistic_day_nets_to_zero() {
    let conn = db();
    let economics = Economics::default();
    let times: Vec<String> = (0..6).map(at).collect();
    let order = |order_id, customer_id, items_minor, discount_minor, at| OrderDelivered {
        order_id,
        customer_id,
        store_id: "s1",
        rider_id: "r1",
        currency: "EUR",
        at,
        items_minor,
        discount_minor,
        delivery_fee_minor: 300,
    };
    // Card order: delivered 2000 - 200 + 300 = 2100, captured, 500 refunded.
    let a = order("oA", "cA", 2_000, 200, &times[0]);
    post(&conn, &order_delivered(&a, &economics).unwrap()).unwrap();
    let captured = CardCaptured {
        order_id: "oA",
        customer_id: "cA",
        currency: "EUR",
        at: &times[1],
        amount_minor: 2_100,
    };
    post(&conn, &card_captured(&captured).unwrap()).unwrap();
    let refund = Refunded {
        order_id: "oA",
        refund_no: 1,
        currency: "EUR",
        at: &times[2],
        amount_minor: 500,
    };
    post(&conn, &refunded(&refund).unwrap()).unwrap();
    // Cash order: delivered 1000 + 300 = 1300, the rider collects 1200 and hands it in.
    let b = order("oB", "cB", 1_000, 0, &times[3]);
    post(&conn, &order_delivered(&b, &economics).unwrap()).unwrap();
    let collected = CashCollected {
        order_id: "oB",
        customer_id: "cB",
        rider_id: "r1",
        currency: "EUR",
        at: &times[4],
        amount_minor: 1_200,
    };
    post(&conn, &cash_collected(&collected).unwrap()).unwrap();
    let handed_in = CashHandedIn {
        handin_id: "h1",
        store_id: "s1",
        rider_id: "r1",
        currency: "EUR",
        at: &times[5],
        amount_minor: 1_200,
    };
    post(&conn, &cash_handed_in(&handed_in).unwrap()).unwrap();

    let trial = trial_balance(&conn).unwrap();
    assert!(is_balanced(&trial), "{trial:?}");
    assert_eq!(trial.len(), 1);
    assert!(trial[0].debits_minor > 0);
    assert_eq!(balance_of(&conn, Account::Customer("cA".into())), 0);
    // The 100 short stays on the customer's account for HQ.
    assert_eq!(balance_of(&conn, Account::Customer("cB".into())), 100);
    assert_eq!(balance_of(&conn, Account::GatewayClearing), 1_600);
    assert_eq!(balance_of(&conn, Account::Refunds), 500);
    assert_eq!(balance_of(&conn, Account::CashInTransit("r1".into())), 0);
    // Owed 1700 + 850 for the goods, less the 1200 cash the store now holds.
    assert_eq!(
        balance_of(&conn, Account::StorePayable("s1".into())),
        -1_350
    );
    // Commission 300 - 200 discount, plus commission 150.
    assert_eq!(balance_of(&conn, Account::PlatformRevenue), -250);
    assert_eq!(balance_of(&conn, Account::DeliveryFees), 0);
    assert_eq!(balance_of(&conn, Account::RiderPayable("r1".into())), -600);
    assert_eq!(balance_of(&conn, Account::RiderPayable("nobody".into())), 0);
    let all = balances(&conn, "EUR").unwrap();
    assert_eq!(all.iter().map(|(_, b)| b).sum::<i64>(), 0);
    assert_eq!(all.len(), 9);
    assert!(all.contains(&("customer:cA".to_owned(), 0)));
}

#[test]
fn the_trial_balance_is_per_currency() {
    let conn = db();
    post(&conn, &delivered("o1", 10_000, 400, &at(0))).unwrap();
    let mut inr = delivered("o2", 5_000, 0, &at(1));
    inr.currency = "INR".into();
    post(&conn, &inr).unwrap();
    let trial = trial_balance(&conn).unwrap();
    assert_eq!(
        trial,
        vec![
            TrialLine {
                currency: "EUR".into(),
                debits_minor: 10_400 + 300,
                credits_minor: 10_700,
            },
            TrialLine {
                currency: "INR".into(),
                debits_minor: 5_000 + 300,
                credits_minor: 5_300,
            },
        ]
    );
    assert!(is_balanced(&trial));
    assert!(!is_balanced(&[TrialLine {
        currency: "EUR".into(),
        debits_minor: 1,
        credits_minor: 2,
    }]));
    assert!(is_balanced(&trial_balance(&db()).unwrap()));
    assert!(matches!(
        balance(&conn, &Account::Refunds, "euro"),
        Err(LedgerError::InvalidCurrency(_))
    ));
}

#[test]
fn sums_beyond_64_bits_are_an_overflow_not_a_wrap() {
    // Overflowing the real tables takes ten million maximal entries; the same queries on a
    // copy of the entries table without its CHECK need two.
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE TABLE ledger_entries (transaction_id TEXT, line_no INTEGER, account TEXT,
             currency TEXT, amount_minor INTEGER, at TEXT);
         INSERT INTO ledger_entries VALUES
             ('t', 1, 'refunds', 'EUR', 9223372036854775807, '2026-03-01T10:00:00.000Z'),
             ('t', 2, 'refunds', 'EUR', 9223372036854775807, '2026-03-01T10:00:00.000Z');",
    )
    .unwrap();
    assert!(matches!(
        balance(&conn, &Account::Refunds, "EUR"),
        Err(LedgerError::Overflow(_))
    ));
    assert!(matches!(
        balances(&conn, "EUR"),
        Err(LedgerError::Overflow(_))
    ));
    assert!(matches!(
        trial_balance(&conn),
        Err(LedgerError::Overflow(_))
    ));
}

/// One business event of the property test, on a few orders, people and two currencies so
/// that keys repeat (retries and conflicts) and accounts are shared.
#[derive(Debug, Clone)]
enum Event {
    Delivered(u8, u8, u8, u8, bool, i64, u8, i64),
    Captured(u8, u8, bool, i64),
    Refunded(u8, u32, bool, i64),
    Collected(u8, u8, u8, bool, i64),
    HandedIn(u8, u8, u8, bool, i64),
}

fn event() -> impl Strategy<Value = Event> {
    let id = 0_u8..4;
    let amount = 1_i64..1_000_000;
    prop_oneof![
        (
            id.clone(),
            id.clone(),
            id.clone(),
            id.clone(),
            any::<bool>(),
            0_i64..1_000_000,
            0_u8..=100,
            0_i64..1_000
        )
            .prop_map(|(o, c, s, r, eur, items, pct, fee)| Event::Delivered(
                o, c, s, r, eur, items, pct, fee
            )),
        (id.clone(), id.clone(), any::<bool>(), amount.clone())
            .prop_map(|(o, c, eur, a)| Event::Captured(o, c, eur, a)),
        (id.clone(), 1_u32..3, any::<bool>(), amount.clone())
            .prop_map(|(o, n, eur, a)| Event::Refunded(o, n, eur, a)),
        (
            id.clone(),
            id.clone(),
            id.clone(),
            any::<bool>(),
            amount.clone()
        )
            .prop_map(|(o, c, r, eur, a)| Event::Collected(o, c, r, eur, a)),
        (id.clone(), id.clone(), id, any::<bool>(), amount)
            .prop_map(|(h, s, r, eur, a)| Event::HandedIn(h, s, r, eur, a)),
    ]
}

fn build(event: &Event, economics: &Economics, minute: u32) -> Result<Transaction, LedgerError> {
    let when = at(minute % 60);
    let currency = |eur: bool| if eur { "EUR" } else { "INR" };
    let name = |prefix: &str, n: u8| format!("{prefix}{n}");
    match *event {
        Event::Delivered(o, c, s, r, eur, items, pct, fee) => order_delivered(
            &OrderDelivered {
                order_id: &name("o", o),
                customer_id: &name("c", c),
                store_id: &name("s", s),
                rider_id: &name("r", r),
                currency: currency(eur),
                at: &when,
                items_minor: items,
                discount_minor: items * i64::from(pct) / 100,
                delivery_fee_minor: fee,
            },
            economics,
        ),
        Event::Captured(o, c, eur, amount_minor) => card_captured(&CardCaptured {
            order_id: &name("o", o),
            customer_id: &name("c", c),
            currency: currency(eur),
            at: &when,
            amount_minor,
        }),
        Event::Refunded(o, refund_no, eur, amount_minor) => refunded(&Refunded {
            order_id: &name("o", o),
            refund_no,
            currency: currency(eur),
            at: &when,
            amount_minor,
        }),
        Event::Collected(o, c, r, eur, amount_minor) => cash_collected(&CashCollected {
            order_id: &name("o", o),
            customer_id: &name("c", c),
            rider_id: &name("r", r),
            currency: currency(eur),
            at: &when,
            amount_minor,
        }),
        Event::HandedIn(h, s, r, eur, amount_minor) => cash_handed_in(&CashHandedIn {
            handin_id: &name("h", h),
            store_id: &name("s", s),
            rider_id: &name("r", r),
            currency: currency(eur),
            at: &when,
            amount_minor,
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_sequence_of_valid_postings_keeps_the_trial_balance_at_zero(
        commission_bp in 0_u32..=10_000,
        rider_fee_minor in 0_i64..2_000,
        events in prop::collection::vec(event(), 1..40),
    ) {
        let conn = db();
        let economics = Economics { commission_bp, rider_fee_minor };
        for (minute, event) in (0_u32..).zip(&events) {
            let transaction = match build(event, &economics, minute) {
                Ok(transaction) => transaction,
                // A delivery of nothing, without fees or rider fee, has nothing to book; any
                // other refusal by a builder is a bug.
                Err(LedgerError::InvalidAmount(_))
                    if matches!(event, Event::Delivered(.., 0, _, 0) if rider_fee_minor == 0) =>
                {
                    continue;
                }
                Err(error) => {
                    return Err(TestCaseError::fail(format!("{event:?}: {error}")));
                }
            };
            let before = rows(&conn);
            match post(&conn, &transaction) {
                Ok(Posted::New) => {
                    prop_assert_eq!(rows(&conn).0, before.0 + 1);
                }
                Ok(Posted::AlreadyPosted) | Err(LedgerError::Conflict { .. }) => {
                    prop_assert_eq!(rows(&conn), before);
                }
                Err(error) => {
                    return Err(TestCaseError::fail(format!("{event:?}: {error}")));
                }
            }
            let trial = trial_balance(&conn).unwrap();
            prop_assert!(is_balanced(&trial), "{:?}", trial);
        }
        for currency in ["EUR", "INR"] {
            let sum: i64 = balances(&conn, currency).unwrap().iter().map(|(_, b)| b).sum();
            prop_assert_eq!(sum, 0);
        }
    }
}
