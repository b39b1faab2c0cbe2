//! The ledger's chart of accounts and their stable text keys.
//!
//! Keys are what `ledger_entries.account` stores and what statements show, so they must never
//! change meaning: a key is either a fixed name or `<kind>:<id>`, and ids may not contain ':',
//! so every key parses back to exactly one account.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::LedgerError;

/// The longest id (customer, store, rider, order) the ledger accepts.
pub const MAX_ID_LEN: usize = 128;

/// One account. Amounts are signed, debit positive, credit negative, so an account's balance
/// is the sum of its entries: positive means a debit balance (something owed to or held by
/// FlashKart), negative a credit balance (something FlashKart owes or has earned).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Account {
    /// What a customer owes (receivable, debit-normal): debited when an order is delivered,
    /// credited when the card is captured or cash is collected. A balance left after both is
    /// a shortfall HQ is told about.
    Customer(String),
    /// Money the card processor holds for FlashKart (asset, debit-normal): debited at capture,
    /// credited by refunds and, later, by the processor's payouts.
    GatewayClearing,
    /// FlashKart's commission less the discounts it funded (income, credit-normal).
    PlatformRevenue,
    /// Delivery fees charged less the riders' pay per delivery (income, credit-normal).
    DeliveryFees,
    /// What FlashKart owes a store for the goods it sold (liability, credit-normal).
    StorePayable(String),
    /// What FlashKart owes a rider for deliveries (liability, credit-normal).
    RiderPayable(String),
    /// Cash a rider collected at the door and has not handed in yet (asset, debit-normal).
    CashInTransit(String),
    /// Money given back to customers (contra-revenue, debit-normal).
    Refunds,
}

impl Account {
    /// The stable text key, e.g. `store_payable:s-12` or `gateway_clearing`.
    pub fn key(&self) -> String {
        match self {
            Self::Customer(id) => format!("customer:{id}"),
            Self::GatewayClearing => "gateway_clearing".to_owned(),
            Self::PlatformRevenue => "platform_revenue".to_owned(),
            Self::DeliveryFees => "delivery_fees".to_owned(),
            Self::StorePayable(id) => format!("store_payable:{id}"),
            Self::RiderPayable(id) => format!("rider_payable:{id}"),
            Self::CashInTransit(id) => format!("cash_in_transit:{id}"),
            Self::Refunds => "refunds".to_owned(),
        }
    }

    /// Parses a key back; anything but a known account with a valid id is refused.
    pub fn parse(key: &str) -> Result<Self, LedgerError> {
        let invalid = || LedgerError::InvalidAccount(key.to_owned());
        let account = match key.split_once(':') {
            None => match key {
                "gateway_clearing" => Self::GatewayClearing,
                "platform_revenue" => Self::PlatformRevenue,
                "delivery_fees" => Self::DeliveryFees,
                "refunds" => Self::Refunds,
                _ => return Err(invalid()),
            },
            Some((kind, id)) => {
                let id = id.to_owned();
                match kind {
                    "customer" => Self::Customer(id),
                    "store_payable" => Self::StorePayable(id),
                    "rider_payable" => Self::RiderPayable(id),
                    "cash_in_transit" => Self::CashInTransit(id),
                    _ => return Err(invalid()),
                }
            }
        };
        account.validate().map_err(|_| invalid())?;
        Ok(account)
    }

    /// Checks the id, because the variants can be built directly with any string.
    pub fn validate(&self) -> Result<(), LedgerError> {
        match self {
            Self::Customer(id)
            | Self::StorePayable(id)
            | Self::RiderPayable(id)
            | Self::CashInTransit(id) => {
                if valid_id(id) {
                    Ok(())
                } else {
                    Err(LedgerError::InvalidAccount(self.key()))
                }
            }
            Self::GatewayClearing | Self::PlatformRevenue | Self::DeliveryFees | Self::Refunds => {
                Ok(())
            }
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

impl From<Account> for String {
    fn from(account: Account) -> Self {
        account.key()
    }
}

impl TryFrom<String> for Account {
    type Error = LedgerError;

    fn try_from(key: String) -> Result<Self, Self::Error> {
        Self::parse(&key)
    }
}

/// 1 to [`MAX_ID_LEN`] printable ASCII characters, no space (ids are copied into keys, CSV
/// and logs, where a space or control character would only cause confusion) and no ':'
/// (the key separator, so a key always parses back to the same account).
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for account in [
            Account::Customer("c-1".into()),
            Account::GatewayClearing,
            Account::PlatformRevenue,
            Account::DeliveryFees,
            Account::StorePayable("s_9".into()),
            Account::RiderPayable("r.7".into()),
            Account::CashInTransit("r.7".into()),
            Account::Refunds,
        ] {
            assert_eq!(Account::parse(&account.key()).ok(), Some(account.clone()));
            let json = serde_json::to_string(&account).unwrap();
            assert_eq!(json, format!("\"{}\"", account.key()));
            assert_eq!(serde_json::from_str::<Account>(&json).unwrap(), account);
        }
    }

    #[test]
    fn bad_keys_and_ids_are_refused() {
        for key in [
            "",
            "customer",
            "customer:",
            "customer:a:b",
            "customer:a b",
            "customer:é",
            "store_payable:\n",
            "refunds:x",
            "gateway_clearing:1",
            "cash:r1",
            "Refunds",
        ] {
            assert!(
                matches!(Account::parse(key), Err(LedgerError::InvalidAccount(_))),
                "{key:?}"
            );
        }
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert!(Account::parse(&format!("customer:{long}")).is_err());
        assert!(Account::parse(&format!("customer:{}", &long[1..])).is_ok());
        assert!(Account::StorePayable("a:b".into()).validate().is_err());
        assert!(serde_json::from_str::<Account>("\"customer:\"").is_err());
    }
}
