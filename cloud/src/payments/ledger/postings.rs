//! The business events FlashKart books, each as one balanced [`Transaction`], and the
//! accounting behind them.
//!
//! One order paid by card books `order_delivered` (what the customer owes and who earns what)
//! then `card_captured` (the customer pays through the processor), and maybe `refunded`. One
//! paid in cash books `order_delivered`, `cash_collected` (rider takes the cash) and
//! `cash_handed_in` (rider gives it to the store). When everything went to plan the
//! customer's account ends at zero; what is left on it is a shortfall (or overpayment).
//!
//! Idempotency keys are `kind:order_id` for events that happen once per order, and
//! `refunded:order_id:n` for refunds, which the caller numbers 1, 2, ... in its own durable
//! records. A cash hand-in covers several orders and is keyed by the store's hand-in id,
//! `cash_handed_in:<handin id>`.

use serde::{Deserialize, Serialize};

use super::{Account, Entry, Kind, LedgerError, MAX_AMOUNT_MINOR, Transaction};

/// The platform's terms with stores and riders, from the payments configuration.
///
/// `rider_fee_minor` is in minor units of whatever currency the order is in: one deployment
/// serves one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Economics {
    /// FlashKart's commission on the value of the items delivered, in basis points
    /// (1500 = 15 %), at most 10000.
    pub commission_bp: u32,
    /// What a rider earns per delivery, paid out of the delivery fees.
    pub rider_fee_minor: i64,
}

impl Default for Economics {
    fn default() -> Self {
        Self {
            commission_bp: 1500,
            rider_fee_minor: 300,
        }
    }
}

impl Economics {
    pub fn validate(&self) -> Result<(), LedgerError> {
        if self.commission_bp > 10_000 {
            return Err(LedgerError::Invalid {
                what: "economics",
                reason: format!(
                    "commission_bp {} is above 10000 (100 %)",
                    self.commission_bp
                ),
            });
        }
        if !(0..=MAX_AMOUNT_MINOR).contains(&self.rider_fee_minor) {
            return Err(LedgerError::Invalid {
                what: "economics",
                reason: format!(
                    "rider_fee_minor {} is not within 0..={MAX_AMOUNT_MINOR}",
                    self.rider_fee_minor
                ),
            });
        }
        Ok(())
    }
}

/// The commission on `items_minor` at `commission_bp`, rounded half up to the minor unit
/// (333 at 15 % is 49.95, booked as 50; 330 at 15 % is 49.5, booked as 50). Whatever the
/// rounding, the store gets the items value less exactly this, so no minor unit is lost.
pub fn commission_minor(items_minor: i64, commission_bp: u32) -> Result<i64, LedgerError> {
    non_negative("items", items_minor)?;
    // i128 cannot overflow here: |items| < 2^63 and bp < 2^32.
    let scaled = i128::from(items_minor) * i128::from(commission_bp) + 5_000;
    i64::try_from(scaled / 10_000)
        .map_err(|_| LedgerError::Overflow("the commission does not fit in 64 bits".to_owned()))
}

/// An order handed to the customer, with what was actually delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderDelivered<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub store_id: &'a str,
    pub rider_id: &'a str,
    pub currency: &'a str,
    pub at: &'a str,
    /// The value of the items delivered (shorts excluded), before any discount.
    pub items_minor: i64,
    /// The coupon discount, funded by the platform; at most `items_minor`.
    pub discount_minor: i64,
    pub delivery_fee_minor: i64,
}

/// Revenue is recognised on delivery, for what was delivered (shorts never reach the books):
///
/// | account                | amount                                   |
/// |------------------------|------------------------------------------|
/// | customer               | debit  items - discount + delivery fee   |
/// | store payable (store)  | credit items - commission                |
/// | platform revenue       | credit commission - discount             |
/// | delivery fees          | credit delivery fee                      |
/// | delivery fees          | debit  rider fee                         |
/// | rider payable (rider)  | credit rider fee                         |
///
/// The store is paid on the full items value less commission whatever the discount, because
/// coupons are the platform's marketing: the discount comes out of the platform's commission,
/// and when it exceeds the commission platform revenue is debited (the order cost FlashKart
/// money). The rider's pay moves from delivery fees to the rider as its own entry pair, so
/// the delivery fees account shows fees earned and riders paid separately (and goes into debit
/// on free deliveries). Zero amounts are left out; the commission is [`commission_minor`].
pub fn order_delivered(
    order: &OrderDelivered<'_>,
    economics: &Economics,
) -> Result<Transaction, LedgerError> {
    economics.validate()?;
    non_negative("items", order.items_minor)?;
    non_negative("discount", order.discount_minor)?;
    non_negative("delivery fee", order.delivery_fee_minor)?;
    if order.discount_minor > order.items_minor {
        return Err(LedgerError::InvalidAmount(format!(
            "discount {} exceeds the items delivered {}",
            order.discount_minor, order.items_minor
        )));
    }
    let commission = commission_minor(order.items_minor, economics.commission_bp)?;
    let total = checked(
        order
            .items_minor
            .checked_sub(order.discount_minor)
            .and_then(|net| net.checked_add(order.delivery_fee_minor)),
        "the order total",
    )?;
    let store_share = checked(
        order.items_minor.checked_sub(commission),
        "the store's share",
    )?;
    let platform = checked(
        commission.checked_sub(order.discount_minor),
        "the platform's revenue",
    )?;
    let rider_fee = economics.rider_fee_minor;
    let mut entries = Vec::with_capacity(6);
    for (account, amount) in [
        (Account::Customer(order.customer_id.to_owned()), Some(total)),
        (
            Account::StorePayable(order.store_id.to_owned()),
            store_share.checked_neg(),
        ),
        (Account::PlatformRevenue, platform.checked_neg()),
        (
            Account::DeliveryFees,
            order.delivery_fee_minor.checked_neg(),
        ),
        (Account::DeliveryFees, Some(rider_fee)),
        (
            Account::RiderPayable(order.rider_id.to_owned()),
            rider_fee.checked_neg(),
        ),
    ] {
        push(&mut entries, account, amount)?;
    }
    finish(Transaction {
        id: new_id(),
        idempotency_key: key(Kind::OrderDelivered, order.order_id, None),
        kind: Kind::OrderDelivered,
        at: order.at.to_owned(),
        order_id: Some(order.order_id.to_owned()),
        store_id: Some(order.store_id.to_owned()),
        rider_id: Some(order.rider_id.to_owned()),
        currency: order.currency.to_owned(),
        memo: None,
        entries,
    })
}

/// The processor captured the customer's card for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardCaptured<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub currency: &'a str,
    pub at: &'a str,
    pub amount_minor: i64,
}

/// The customer pays by card: gateway clearing is debited (the processor now holds the money
/// for FlashKart until it pays out) and the customer credited (what they owe goes down by
/// the captured amount). One capture per order: key `card_captured:<order>`.
pub fn card_captured(capture: &CardCaptured<'_>) -> Result<Transaction, LedgerError> {
    positive("captured amount", capture.amount_minor)?;
    finish(Transaction {
        id: new_id(),
        idempotency_key: key(Kind::CardCaptured, capture.order_id, None),
        kind: Kind::CardCaptured,
        at: capture.at.to_owned(),
        order_id: Some(capture.order_id.to_owned()),
        store_id: None,
        rider_id: None,
        currency: capture.currency.to_owned(),
        memo: None,
        entries: vec![
            Entry {
                account: Account::GatewayClearing,
                amount_minor: capture.amount_minor,
            },
            Entry {
                account: Account::Customer(capture.customer_id.to_owned()),
                amount_minor: -capture.amount_minor,
            },
        ],
    })
}

/// Money given back to a customer's card after capture; `refund_no` numbers the order's
/// refunds from 1 (key `refunded:<order>:<n>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refunded<'a> {
    pub order_id: &'a str,
    pub refund_no: u32,
    pub currency: &'a str,
    pub at: &'a str,
    pub amount_minor: i64,
}

/// A refund: refunds is debited and gateway clearing credited (the processor sends the money
/// back to the card out of what it holds for us).
///
/// The delivery's posting is deliberately not reversed, and the customer's account is not
/// touched: the customer owed and paid for the order (their account is settled), the store
/// delivered and is still owed its share, and the refund is a cost FlashKart chose to bear.
/// Booking it on one contra-revenue account shows HQ every refund in one place; whether a
/// store or rider should bear part of it is a separate decision, booked separately.
pub fn refunded(refund: &Refunded<'_>) -> Result<Transaction, LedgerError> {
    positive("refunded amount", refund.amount_minor)?;
    sequence("refund_no", refund.refund_no)?;
    finish(Transaction {
        id: new_id(),
        idempotency_key: key(Kind::Refunded, refund.order_id, Some(refund.refund_no)),
        kind: Kind::Refunded,
        at: refund.at.to_owned(),
        order_id: Some(refund.order_id.to_owned()),
        store_id: None,
        rider_id: None,
        currency: refund.currency.to_owned(),
        memo: None,
        entries: vec![
            Entry {
                account: Account::Refunds,
                amount_minor: refund.amount_minor,
            },
            Entry {
                account: Account::GatewayClearing,
                amount_minor: -refund.amount_minor,
            },
        ],
    })
}

/// A rider collected cash at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CashCollected<'a> {
    pub order_id: &'a str,
    pub customer_id: &'a str,
    pub rider_id: &'a str,
    pub currency: &'a str,
    pub at: &'a str,
    /// What the rider says they took, which may differ from the order total.
    pub amount_minor: i64,
}

/// Cash at the door: cash in transit (the rider) is debited, the customer credited, with the
/// amount actually collected. A difference from the total stays on the customer's account,
/// which is what HQ is flagged about. One collection per order: key `cash_collected:<order>`.
pub fn cash_collected(cash: &CashCollected<'_>) -> Result<Transaction, LedgerError> {
    positive("collected amount", cash.amount_minor)?;
    finish(Transaction {
        id: new_id(),
        idempotency_key: key(Kind::CashCollected, cash.order_id, None),
        kind: Kind::CashCollected,
        at: cash.at.to_owned(),
        order_id: Some(cash.order_id.to_owned()),
        store_id: None,
        rider_id: Some(cash.rider_id.to_owned()),
        currency: cash.currency.to_owned(),
        memo: None,
        entries: vec![
            Entry {
                account: Account::CashInTransit(cash.rider_id.to_owned()),
                amount_minor: cash.amount_minor,
            },
            Entry {
                account: Account::Customer(cash.customer_id.to_owned()),
                amount_minor: -cash.amount_minor,
            },
        ],
    })
}

/// A rider handed cash in at a store: one hand-in (the store's `cash_handins` row, by id)
/// covers whatever cash the rider brings, across orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CashHandedIn<'a> {
    pub handin_id: &'a str,
    pub store_id: &'a str,
    pub rider_id: &'a str,
    pub currency: &'a str,
    pub at: &'a str,
    pub amount_minor: i64,
}

/// Cash handed in at the store: the store now holds the platform's cash, so it is owed that
/// much less (store payable debited) and the rider no longer carries it (cash in transit
/// credited). Settling the store then nets its cash against what it is owed. The key is the
/// hand-in's own id, `cash_handed_in:<handin id>`, since a hand-in belongs to no one order.
pub fn cash_handed_in(cash: &CashHandedIn<'_>) -> Result<Transaction, LedgerError> {
    positive("handed-in amount", cash.amount_minor)?;
    if !super::valid_id(cash.handin_id) {
        return Err(LedgerError::Invalid {
            what: "handin_id",
            reason: format!("{:?} is not a valid id", cash.handin_id),
        });
    }
    finish(Transaction {
        id: new_id(),
        idempotency_key: key(Kind::CashHandedIn, cash.handin_id, None),
        kind: Kind::CashHandedIn,
        at: cash.at.to_owned(),
        order_id: None,
        store_id: Some(cash.store_id.to_owned()),
        rider_id: Some(cash.rider_id.to_owned()),
        currency: cash.currency.to_owned(),
        memo: None,
        entries: vec![
            Entry {
                account: Account::StorePayable(cash.store_id.to_owned()),
                amount_minor: cash.amount_minor,
            },
            Entry {
                account: Account::CashInTransit(cash.rider_id.to_owned()),
                amount_minor: -cash.amount_minor,
            },
        ],
    })
}

fn new_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// `kind:id[:n]`; ids cannot contain ':', so keys of different events never collide.
fn key(kind: Kind, id: &str, n: Option<u32>) -> String {
    match n {
        Some(n) => format!("{}:{id}:{n}", kind.as_str()),
        None => format!("{}:{id}", kind.as_str()),
    }
}

/// Builders check their result like [`super::post`] will, so a bad event fails where it is
/// built rather than where it is posted.
fn finish(transaction: Transaction) -> Result<Transaction, LedgerError> {
    transaction.validate()?;
    Ok(transaction)
}

fn push(
    entries: &mut Vec<Entry>,
    account: Account,
    amount: Option<i64>,
) -> Result<(), LedgerError> {
    let amount_minor = checked(amount, "an entry")?;
    if amount_minor != 0 {
        entries.push(Entry {
            account,
            amount_minor,
        });
    }
    Ok(())
}

fn checked(amount: Option<i64>, what: &str) -> Result<i64, LedgerError> {
    amount.ok_or_else(|| LedgerError::Overflow(format!("{what} does not fit in 64 bits")))
}

fn non_negative(what: &str, amount: i64) -> Result<(), LedgerError> {
    if amount < 0 {
        return Err(LedgerError::InvalidAmount(format!(
            "{what} {amount} is negative"
        )));
    }
    Ok(())
}

fn positive(what: &str, amount: i64) -> Result<(), LedgerError> {
    if amount <= 0 {
        return Err(LedgerError::InvalidAmount(format!(
            "{what} {amount} is not positive"
        )));
    }
    Ok(())
}

fn sequence(what: &'static str, n: u32) -> Result<(), LedgerError> {
    if n == 0 {
        return Err(LedgerError::Invalid {
            what,
            reason: "numbered from 1".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const AT: &str = "2026-03-01T10:00:00.000Z";

    fn order(
        items_minor: i64,
        discount_minor: i64,
        delivery_fee_minor: i64,
    ) -> OrderDelivered<'static> {
        OrderDelivered {
            order_id: "o1",
            customer_id: "c1",
            store_id: "s1",
            rider_id: "r1",
            currency: "EUR",
            at: AT,
            items_minor,
            discount_minor,
            delivery_fee_minor,
        }
    }

    fn amounts(transaction: &Transaction) -> Vec<(String, i64)> {
        transaction
            .entries
            .iter()
            .map(|e| (e.account.key(), e.amount_minor))
            .collect()
    }

    fn sum(transaction: &Transaction) -> i64 {
        transaction.entries.iter().map(|e| e.amount_minor).sum()
    }

    #[test]
    fn order_delivered_books_every_share() {
        let t = order_delivered(&order(10_000, 500, 400), &Economics::default()).unwrap();
        assert_eq!(
            amounts(&t),
            [
                ("customer:c1", 9_900),
                ("store_payable:s1", -8_500),
                ("platform_revenue", -1_000),
                ("delivery_fees", -400),
                ("delivery_fees", 300),
                ("rider_payable:r1", -300),
            ]
            .map(|(k, a)| (k.to_owned(), a))
        );
        assert_eq!(sum(&t), 0);
        assert_eq!(t.idempotency_key, "order_delivered:o1");
        assert_eq!(t.kind, Kind::OrderDelivered);
        assert_eq!(
            (
                t.order_id.as_deref(),
                t.store_id.as_deref(),
                t.rider_id.as_deref()
            ),
            (Some("o1"), Some("s1"), Some("r1"))
        );
        assert_eq!(uuid::Uuid::parse_str(&t.id).unwrap().get_version_num(), 7);
    }

    #[test]
    fn commission_rounds_half_up() {
        for (items, bp, commission) in [
            (333, 1500, 50), // 49.95
            (330, 1500, 50), // 49.5
            (329, 1500, 49), // 49.35
            (1, 4999, 0),
            (1, 5000, 1),
            (0, 1500, 0),
            (777, 10_000, 777),
            (777, 0, 0),
            (i64::MAX, 10_000, i64::MAX),
        ] {
            assert_eq!(
                commission_minor(items, bp).unwrap(),
                commission,
                "{items} {bp}"
            );
        }
        assert!(commission_minor(-1, 1500).is_err());
    }

    #[test]
    fn a_discount_above_the_commission_debits_platform_revenue() {
        let t = order_delivered(&order(1_000, 300, 0), &Economics::default()).unwrap();
        assert!(amounts(&t).contains(&("platform_revenue".to_owned(), 150)));
        assert!(amounts(&t).contains(&("customer:c1".to_owned(), 700)));
        assert_eq!(sum(&t), 0);
    }

    #[test]
    fn zero_amounts_are_left_out() {
        // Free delivery: delivery fees only pay the rider (a debit); exact commission: no
        // platform revenue line.
        let t = order_delivered(&order(1_000, 150, 0), &Economics::default()).unwrap();
        assert_eq!(
            amounts(&t),
            [
                ("customer:c1", 850),
                ("store_payable:s1", -850),
                ("delivery_fees", 300),
                ("rider_payable:r1", -300),
            ]
            .map(|(k, a)| (k.to_owned(), a))
        );
        let nothing = Economics {
            commission_bp: 0,
            rider_fee_minor: 0,
        };
        assert!(matches!(
            order_delivered(&order(0, 0, 0), &nothing),
            Err(LedgerError::InvalidAmount(_))
        ));
    }

    #[test]
    fn the_other_events_are_balanced_with_natural_keys() {
        let captured = card_captured(&CardCaptured {
            order_id: "o1",
            customer_id: "c1",
            currency: "EUR",
            at: AT,
            amount_minor: 9_900,
        })
        .unwrap();
        let refund = refunded(&Refunded {
            order_id: "o1",
            refund_no: 2,
            currency: "EUR",
            at: AT,
            amount_minor: 100,
        })
        .unwrap();
        let collected = cash_collected(&CashCollected {
            order_id: "o1",
            customer_id: "c1",
            rider_id: "r1",
            currency: "EUR",
            at: AT,
            amount_minor: 9_000,
        })
        .unwrap();
        let handed_in = cash_handed_in(&CashHandedIn {
            handin_id: "h1",
            store_id: "s1",
            rider_id: "r1",
            currency: "EUR",
            at: AT,
            amount_minor: 9_000,
        })
        .unwrap();
        let expect = |t: &Transaction, key: &str, entries: [(&str, i64); 2]| {
            assert_eq!(t.idempotency_key, key);
            assert_eq!(amounts(t), entries.map(|(k, a)| (k.to_owned(), a)));
            assert_eq!(sum(t), 0);
            assert!(t.validate().is_ok());
        };
        expect(
            &captured,
            "card_captured:o1",
            [("gateway_clearing", 9_900), ("customer:c1", -9_900)],
        );
        expect(
            &refund,
            "refunded:o1:2",
            [("refunds", 100), ("gateway_clearing", -100)],
        );
        expect(
            &collected,
            "cash_collected:o1",
            [("cash_in_transit:r1", 9_000), ("customer:c1", -9_000)],
        );
        expect(
            &handed_in,
            "cash_handed_in:h1",
            [("store_payable:s1", 9_000), ("cash_in_transit:r1", -9_000)],
        );
    }

    #[test]
    fn bad_events_are_refused() {
        let economics = Economics::default();
        let refused = |o: OrderDelivered<'_>| order_delivered(&o, &economics).unwrap_err();
        assert!(matches!(
            refused(order(-1, 0, 0)),
            LedgerError::InvalidAmount(_)
        ));
        assert!(matches!(
            refused(order(100, 101, 0)),
            LedgerError::InvalidAmount(_)
        ));
        assert!(matches!(
            refused(order(100, 0, -5)),
            LedgerError::InvalidAmount(_)
        ));
        assert!(matches!(
            refused(order(i64::MAX, 0, 1)),
            LedgerError::Overflow(_)
        ));
        assert!(matches!(
            refused(order(MAX_AMOUNT_MINOR + 1, 0, 0)),
            LedgerError::InvalidAmount(_)
        ));
        let mut o = order(100, 0, 0);
        o.currency = "eur";
        assert!(matches!(refused(o), LedgerError::InvalidCurrency(_)));
        let mut o = order(100, 0, 0);
        o.store_id = "s 1";
        assert!(matches!(
            refused(o),
            LedgerError::Invalid {
                what: "store_id",
                ..
            }
        ));
        let mut o = order(100, 0, 0);
        o.order_id = "o:1";
        assert!(matches!(
            refused(o),
            LedgerError::Invalid {
                what: "order_id",
                ..
            }
        ));
        let mut o = order(100, 0, 0);
        o.at = "2026-03-01 10:00";
        assert!(matches!(
            refused(o),
            LedgerError::Invalid { what: "at", .. }
        ));
        let bad_economics = Economics {
            commission_bp: 10_001,
            ..Economics::default()
        };
        assert!(order_delivered(&order(100, 0, 0), &bad_economics).is_err());
        let capture = |amount_minor| {
            card_captured(&CardCaptured {
                order_id: "o1",
                customer_id: "c1",
                currency: "EUR",
                at: AT,
                amount_minor,
            })
        };
        assert!(matches!(capture(0), Err(LedgerError::InvalidAmount(_))));
        assert!(matches!(capture(-5), Err(LedgerError::InvalidAmount(_))));
        assert!(matches!(
            refunded(&Refunded {
                order_id: "o1",
                refund_no: 0,
                currency: "EUR",
                at: AT,
                amount_minor: 5,
            }),
            Err(LedgerError::Invalid {
                what: "refund_no",
                ..
            })
        ));
    }

    #[test]
    fn economics_come_from_config_with_defaults() {
        let default = Economics::default();
        assert_eq!(
            (default.commission_bp, default.rider_fee_minor),
            (1500, 300)
        );
        assert!(default.validate().is_ok());
        let parsed: Economics = serde_json::from_str(r#"{"commission_bp": 1000}"#).unwrap();
        assert_eq!(
            parsed,
            Economics {
                commission_bp: 1000,
                rider_fee_minor: 300
            }
        );
        assert!(serde_json::from_str::<Economics>(r#"{"commission": 1}"#).is_err());
        for bad in [
            Economics {
                commission_bp: 10_001,
                rider_fee_minor: 0,
            },
            Economics {
                commission_bp: 0,
                rider_fee_minor: -1,
            },
            Economics {
                commission_bp: 0,
                rider_fee_minor: MAX_AMOUNT_MINOR + 1,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
