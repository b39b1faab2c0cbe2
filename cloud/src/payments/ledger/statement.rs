//! Statements: one account's movements over a period with running balances, as JSON (serde)
//! or CSV, for what a store is owed (its store payable) and what a rider is owed and carries
//! (rider payable and cash in transit).
//!
//! Balances keep the ledger's sign (debit positive): a store's or rider's payable is normally
//! negative, meaning FlashKart owes them that much; cash in transit is normally positive, the
//! cash the rider holds. A period is half-open, `[from, to)`, on the transactions' `at`, so
//! consecutive periods neither overlap nor leave gaps.

use rusqlite::{Connection, params};
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::{Account, LedgerError, check_currency, check_timestamp, pg_sum_error, sum_error};

/// One entry on the account in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementLine {
    pub at: String,
    pub transaction_id: String,
    pub kind: String,
    pub order_id: Option<String>,
    pub memo: Option<String>,
    /// The entry's amount if it is a debit, else 0.
    pub debit_minor: i64,
    /// The entry's amount as a positive number if it is a credit, else 0.
    pub credit_minor: i64,
    /// The account's balance after this entry.
    pub balance_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub account: Account,
    pub currency: String,
    pub from: String,
    pub to: String,
    /// The balance of everything before `from`.
    pub opening_minor: i64,
    /// In time order (then transaction id, then line within the transaction).
    pub lines: Vec<StatementLine>,
    /// The balance of everything before `to`.
    pub closing_minor: i64,
}

/// A rider's two accounts over the same period: what FlashKart owes them and the cash they
/// carry. Settling a rider nets the two, but they are different things and stay separate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiderStatements {
    pub rider_payable: Statement,
    pub cash_in_transit: Statement,
}

/// The statement of `account` in `currency` for `[from, to)`; both bounds are timestamps in
/// the ledger's format (UTC RFC 3339 with milliseconds and `Z`).
pub fn statement(
    conn: &Connection,
    account: &Account,
    currency: &str,
    from: &str,
    to: &str,
) -> Result<Statement, LedgerError> {
    account.validate()?;
    check_currency(currency)?;
    check_timestamp("from", from)?;
    check_timestamp("to", to)?;
    if from > to {
        return Err(LedgerError::Invalid {
            what: "period",
            reason: format!("{from} is after {to}"),
        });
    }
    let key = account.key();
    let opening_minor: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(amount_minor), 0) FROM ledger_entries
             WHERE account = ?1 AND currency = ?2 AND at < ?3",
        )?
        .query_row(params![key, currency, from], |row| row.get(0))
        .map_err(sum_error)?;
    let mut query = conn.prepare_cached(
        "SELECT e.at, e.transaction_id, t.kind, t.order_id, t.memo, e.amount_minor
         FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
         WHERE e.account = ?1 AND e.currency = ?2 AND e.at >= ?3 AND e.at < ?4
         ORDER BY e.at, e.transaction_id, e.line_no",
    )?;
    let rows = query.query_map(params![key, currency, from, to], |row| {
        Ok((
            StatementLine {
                at: row.get(0)?,
                transaction_id: row.get(1)?,
                kind: row.get(2)?,
                order_id: row.get(3)?,
                memo: row.get(4)?,
                debit_minor: 0,
                credit_minor: 0,
                balance_minor: 0,
            },
            row.get::<_, i64>(5)?,
        ))
    })?;
    let rows = rows.map(|row| row.map_err(LedgerError::from));
    fold(account, currency, from, to, opening_minor, rows)
}

/// The statement from its opening balance and its entries in order: running balances, and
/// each entry as a debit or a credit.
fn fold(
    account: &Account,
    currency: &str,
    from: &str,
    to: &str,
    opening_minor: i64,
    rows: impl Iterator<Item = Result<(StatementLine, i64), LedgerError>>,
) -> Result<Statement, LedgerError> {
    let mut balance = opening_minor;
    let mut lines = Vec::new();
    for row in rows {
        let (mut line, amount) = row?;
        balance = balance
            .checked_add(amount)
            .ok_or_else(|| LedgerError::Overflow(format!("the running balance of {account}")))?;
        // Entries are never zero and within ±10^12, so negating cannot overflow; checked
        // anyway because the database is not this code.
        if amount > 0 {
            line.debit_minor = amount;
        } else {
            line.credit_minor = amount
                .checked_neg()
                .ok_or_else(|| LedgerError::Overflow(format!("a credit on {account}")))?;
        }
        line.balance_minor = balance;
        lines.push(line);
    }
    Ok(Statement {
        account: account.clone(),
        currency: currency.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        opening_minor,
        lines,
        closing_minor: balance,
    })
}

/// [`statement`] on PostgreSQL: the same checks, rows in the same order.
pub async fn pg_statement(
    c: &impl GenericClient,
    account: &Account,
    currency: &str,
    from: &str,
    to: &str,
) -> Result<Statement, LedgerError> {
    account.validate()?;
    check_currency(currency)?;
    check_timestamp("from", from)?;
    check_timestamp("to", to)?;
    if from > to {
        return Err(LedgerError::Invalid {
            what: "period",
            reason: format!("{from} is after {to}"),
        });
    }
    let key = account.key();
    let opening_minor: i64 = c
        .query_one(
            "SELECT COALESCE(SUM(amount_minor), 0)::BIGINT FROM ledger_entries
             WHERE account = $1 AND currency = $2 AND at < $3",
            &[&key, &currency, &from],
        )
        .await
        .map_err(pg_sum_error)?
        .get(0);
    let rows = c
        .query(
            "SELECT e.at, e.transaction_id, t.kind, t.order_id, t.memo, e.amount_minor
             FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
             WHERE e.account = $1 AND e.currency = $2 AND e.at >= $3 AND e.at < $4
             ORDER BY e.at, e.transaction_id, e.line_no",
            &[&key, &currency, &from, &to],
        )
        .await?;
    let rows = rows.iter().map(|row| {
        Ok((
            StatementLine {
                at: row.get(0),
                transaction_id: row.get(1),
                kind: row.get(2),
                order_id: row.get(3),
                memo: row.get(4),
                debit_minor: 0,
                credit_minor: 0,
                balance_minor: 0,
            },
            row.get::<_, i64>(5),
        ))
    });
    fold(account, currency, from, to, opening_minor, rows)
}

/// [`rider_statements`] on PostgreSQL.
pub async fn pg_rider_statements(
    c: &impl GenericClient,
    rider_id: &str,
    currency: &str,
    from: &str,
    to: &str,
) -> Result<RiderStatements, LedgerError> {
    Ok(RiderStatements {
        rider_payable: pg_statement(
            c,
            &Account::RiderPayable(rider_id.to_owned()),
            currency,
            from,
            to,
        )
        .await?,
        cash_in_transit: pg_statement(
            c,
            &Account::CashInTransit(rider_id.to_owned()),
            currency,
            from,
            to,
        )
        .await?,
    })
}

/// Both of a rider's statements for `[from, to)`.
pub fn rider_statements(
    conn: &Connection,
    rider_id: &str,
    currency: &str,
    from: &str,
    to: &str,
) -> Result<RiderStatements, LedgerError> {
    Ok(RiderStatements {
        rider_payable: statement(
            conn,
            &Account::RiderPayable(rider_id.to_owned()),
            currency,
            from,
            to,
        )?,
        cash_in_transit: statement(
            conn,
            &Account::CashInTransit(rider_id.to_owned()),
            currency,
            from,
            to,
        )?,
    })
}

const CSV_HEADER: &str = "account,currency,at,transaction_id,kind,order_id,memo,\
                          debit_minor,credit_minor,balance_minor\r\n";

impl Statement {
    /// RFC 4180 CSV (CRLF line ends, a header row): an `opening_balance` row at `from`, one
    /// row per line, a `closing_balance` row at `to`. Amounts are integers in minor units
    /// next to the currency. Text that a spreadsheet would run as a formula (starting with
    /// `=`, `+`, `-`, `@`, tab or CR) gets a leading apostrophe.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from(CSV_HEADER);
        self.write_rows(&mut csv);
        csv
    }

    fn write_rows(&self, csv: &mut String) {
        let account = self.account.key();
        let balance_row = |csv: &mut String, at: &str, kind: &str, balance: i64| {
            row(
                csv,
                [&account, &self.currency, at, "", kind, "", ""],
                ["", "", &balance.to_string()],
            );
        };
        balance_row(csv, &self.from, "opening_balance", self.opening_minor);
        for line in &self.lines {
            row(
                csv,
                [
                    &account,
                    &self.currency,
                    &line.at,
                    &line.transaction_id,
                    &line.kind,
                    line.order_id.as_deref().unwrap_or_default(),
                    line.memo.as_deref().unwrap_or_default(),
                ],
                [
                    &line.debit_minor.to_string(),
                    &line.credit_minor.to_string(),
                    &line.balance_minor.to_string(),
                ],
            );
        }
        balance_row(csv, &self.to, "closing_balance", self.closing_minor);
    }
}

impl RiderStatements {
    /// Both statements in one CSV under one header, payable first (see [`Statement::to_csv`]).
    pub fn to_csv(&self) -> String {
        let mut csv = String::from(CSV_HEADER);
        self.rider_payable.write_rows(&mut csv);
        self.cash_in_transit.write_rows(&mut csv);
        csv
    }
}

/// Text fields are guarded and quoted; numbers are ours and written as they are (guarding
/// them would turn a negative balance into text).
fn row(csv: &mut String, text: [&str; 7], numbers: [&str; 3]) {
    for (i, field) in text.iter().enumerate() {
        if i > 0 {
            csv.push(',');
        }
        push_text(csv, field);
    }
    for number in numbers {
        csv.push(',');
        csv.push_str(number);
    }
    csv.push_str("\r\n");
}

fn push_text(csv: &mut String, field: &str) {
    let guard = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = field.contains([',', '"', '\r', '\n']);
    if quote {
        csv.push('"');
    }
    if guard {
        csv.push('\'');
    }
    if quote {
        csv.push_str(&field.replace('"', "\"\""));
        csv.push('"');
    } else {
        csv.push_str(field);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::{at, db, delivered};
    use super::super::{
        CashCollected, CashHandedIn, balance, cash_collected, cash_handed_in, post,
    };
    use super::*;

    fn store() -> Account {
        Account::StorePayable("s1".into())
    }

    /// Store s1 sells 10000 (owed 8500) at minutes 0, 10, 20 and 30; at 25 rider r1 hands in
    /// 1000 of cash.
    fn busy_store() -> Connection {
        let conn = db();
        for (order, minute) in [("o0", 0), ("o10", 10), ("o20", 20), ("o30", 30)] {
            post(&conn, &delivered(order, 10_000, 400, &at(minute))).unwrap();
        }
        let handed_in = CashHandedIn {
            handin_id: "h1",
            store_id: "s1",
            rider_id: "r1",
            currency: "EUR",
            at: &at(25),
            amount_minor: 1_000,
        };
        post(
            &conn,
            &cash_handed_in(&handed_in).unwrap().with_memo("till 2"),
        )
        .unwrap();
        conn
    }

    #[test]
    fn opening_running_and_closing_balances_over_a_half_open_period() {
        let conn = busy_store();
        // From is included (the sale at minute 10), to is not (the sale at minute 30).
        let s = statement(&conn, &store(), "EUR", &at(10), &at(30)).unwrap();
        assert_eq!(s.opening_minor, -8_500);
        let lines: Vec<_> = s
            .lines
            .iter()
            .map(|l| {
                (
                    l.at.as_str(),
                    l.kind.as_str(),
                    l.order_id.as_deref(),
                    l.debit_minor,
                    l.credit_minor,
                    l.balance_minor,
                )
            })
            .collect();
        let (m10, m20, m25) = (at(10), at(20), at(25));
        assert_eq!(
            lines,
            [
                (
                    m10.as_str(),
                    "order_delivered",
                    Some("o10"),
                    0,
                    8_500,
                    -17_000
                ),
                (
                    m20.as_str(),
                    "order_delivered",
                    Some("o20"),
                    0,
                    8_500,
                    -25_500
                ),
                (m25.as_str(), "cash_handed_in", None, 1_000, 0, -24_500),
            ]
        );
        assert_eq!(s.lines[2].memo.as_deref(), Some("till 2"));
        assert_eq!(s.closing_minor, -24_500);
        // The next period starts where this one closed.
        let next = statement(&conn, &store(), "EUR", &at(30), &at(59)).unwrap();
        assert_eq!(next.opening_minor, s.closing_minor);
        assert_eq!(next.lines.len(), 1);
        assert_eq!(next.closing_minor, -33_000);
        assert_eq!(next.closing_minor, balance(&conn, &store(), "EUR").unwrap());
        // An empty period, and other currencies, have no lines.
        let empty = statement(&conn, &store(), "EUR", &at(11), &at(11)).unwrap();
        assert!(empty.lines.is_empty());
        assert_eq!(
            (empty.opening_minor, empty.closing_minor),
            (-17_000, -17_000)
        );
        let inr = statement(&conn, &store(), "INR", &at(0), &at(59)).unwrap();
        assert_eq!(
            (inr.opening_minor, inr.lines.len(), inr.closing_minor),
            (0, 0, 0)
        );
    }

    #[test]
    fn periods_and_accounts_must_be_well_formed() {
        let conn = busy_store();
        let refused = |from: &str, to: &str| statement(&conn, &store(), "EUR", from, to);
        assert!(matches!(
            refused(&at(30), &at(10)),
            Err(LedgerError::Invalid { what: "period", .. })
        ));
        assert!(matches!(
            refused("2026-03-01", &at(10)),
            Err(LedgerError::Invalid { what: "from", .. })
        ));
        assert!(matches!(
            refused(&at(10), "2026-03-01T10:30:00+00:00"),
            Err(LedgerError::Invalid { what: "to", .. })
        ));
        assert!(matches!(
            statement(
                &conn,
                &Account::StorePayable(String::new()),
                "EUR",
                &at(0),
                &at(1)
            ),
            Err(LedgerError::InvalidAccount(_))
        ));
        assert!(matches!(
            statement(&conn, &store(), "Eur", &at(0), &at(1)),
            Err(LedgerError::InvalidCurrency(_))
        ));
    }

    #[test]
    fn a_riders_statements_cover_pay_and_cash() {
        let conn = busy_store();
        let collected = CashCollected {
            order_id: "o20",
            customer_id: "c-o20",
            rider_id: "r1",
            currency: "EUR",
            at: &at(21),
            amount_minor: 1_000,
        };
        post(&conn, &cash_collected(&collected).unwrap()).unwrap();
        let rider = rider_statements(&conn, "r1", "EUR", &at(15), &at(59)).unwrap();
        assert_eq!(rider.rider_payable.opening_minor, -600);
        assert_eq!(rider.rider_payable.closing_minor, -1_200);
        let cash: Vec<_> = rider
            .cash_in_transit
            .lines
            .iter()
            .map(|l| (l.debit_minor, l.credit_minor, l.balance_minor))
            .collect();
        assert_eq!(cash, [(1_000, 0, 1_000), (0, 1_000, 0)]);
        let csv = rider.to_csv();
        assert_eq!(csv.matches("account,currency").count(), 1);
        assert!(csv.contains(
            "rider_payable:r1,EUR,2026-03-01T10:15:00.000Z,,opening_balance,,,,,-600\r\n"
        ));
        assert!(csv.contains(
            "cash_in_transit:r1,EUR,2026-03-01T10:59:00.000Z,,closing_balance,,,,,0\r\n"
        ));
    }

    #[test]
    fn csv_quotes_fields_and_defuses_formulas() {
        let line = |id: &str, order_id: Option<&str>, memo: &str, amount: i64, balance: i64| {
            StatementLine {
                at: "2026-03-01T10:00:00.000Z".into(),
                transaction_id: id.into(),
                kind: "cash_handed_in".into(),
                order_id: order_id.map(str::to_owned),
                memo: Some(memo.into()),
                debit_minor: amount.max(0),
                credit_minor: (-amount).max(0),
                balance_minor: balance,
            }
        };
        let s = Statement {
            account: store(),
            currency: "EUR".into(),
            from: "2026-03-01T00:00:00.000Z".into(),
            to: "2026-03-02T00:00:00.000Z".into(),
            opening_minor: -100,
            lines: vec![
                line("t1", Some("o1"), "plain", 50, -50),
                line("t2", None, "till 2, left drawer", 10, -40),
                line("t3", Some("o3"), "said \"keep change\"", 5, -35),
                line("t4", Some("o4"), "two\nlines", -5, -40),
                line(
                    "t5",
                    Some("=cmd|'/c calc'!A1"),
                    "=HYPERLINK(\"http://x\")",
                    1,
                    -39,
                ),
                line("t6", Some("o6"), "+1,2", 1, -38),
                line("t7", Some("o7"), "-2", 1, -37),
                line("t8", Some("o8"), "@SUM(A1)", 1, -36),
            ],
            closing_minor: -36,
        };
        let expected = [
            "account,currency,at,transaction_id,kind,order_id,memo,debit_minor,credit_minor,balance_minor",
            "store_payable:s1,EUR,2026-03-01T00:00:00.000Z,,opening_balance,,,,,-100",
            "store_payable:s1,EUR,2026-03-01T10:00:00.000Z,t1,cash_handed_in,o1,plain,50,0,-50",
            "store_payable:s1,EUR,2026-03-01T10:00:00.000Z,t2,cash_handed_in,,\"till 2, left drawer\",10,0,-40",
            "store_payable:s1,EUR,2026-03-01T10:00:00.000Z,t3,cash_handed_in,o3,\"said \"\"keep change\"\"\",5,0,-35",
            "store_payable:s1,EUR,2026-03-01T10:00:00.000Z,t4,cash_handed_in,o4,\"two\nlines\",0,5,-40",
            "store_payable:s1,EUR,2026-03-01T10:00:00.000Z,t5,cash_handed_in,'=cmd|'/c calc'!A1,\"'=HYPERLINK(\"\"http://x\"\")\",1,0,-39",
            "store_payable:s1,EUR,2026-03-01T10:00:00.000Z,t6,cash_handed_in,o6,\"'+1,2\",1,0,-38",
            "store_payable:s1,EUR,2026-03-01T10:00:00.000Z,t7,cash_handed_in,o7,'-2,1,0,-37",
            "store_payable:s1,EUR,2026-03-01T10:00:00.000Z,t8,cash_handed_in,o8,'@SUM(A1),1,0,-36",
            "store_payable:s1,EUR,2026-03-02T00:00:00.000Z,,closing_balance,,,,,-36",
            "",
        ]
        .join("\r\n");
        assert_eq!(s.to_csv(), expected);
    }

    #[test]
    fn statements_serialise_to_json_with_account_keys() {
        let conn = busy_store();
        let s = statement(&conn, &store(), "EUR", &at(25), &at(26)).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["account"], "store_payable:s1");
        assert_eq!(json["opening_minor"], -25_500);
        assert_eq!(json["lines"][0]["kind"], "cash_handed_in");
        assert_eq!(json["lines"][0]["debit_minor"], 1_000);
        assert_eq!(json["lines"][0]["memo"], "till 2");
        assert_eq!(json["closing_minor"], -24_500);
    }
}
