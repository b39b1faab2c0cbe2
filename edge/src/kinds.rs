//! What kind of thing happened: an order's status and a ledger move's kind.
//!
//! Why a module of its own: the write context (`work::ctx`), the live stream and the
//! errors all name these two, and so do the order machine and the ledger that own their rules.
//! Kept apart and depending on nothing of the crate, the context and the errors depend on
//! neither the orders nor the stock module, which both depend on them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The order lifecycle of ARCHITECTURE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Confirmed,
    Routed,
    Accepted,
    Picking,
    Packed,
    Ready,
    Assigned,
    PickedUp,
    Delivered,
    Closed,
    Cancelled,
    Refunded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Routed => "ROUTED",
            Self::Accepted => "ACCEPTED",
            Self::Picking => "PICKING",
            Self::Packed => "PACKED",
            Self::Ready => "READY",
            Self::Assigned => "ASSIGNED",
            Self::PickedUp => "PICKED_UP",
            Self::Delivered => "DELIVERED",
            Self::Closed => "CLOSED",
            Self::Cancelled => "CANCELLED",
            Self::Refunded => "REFUNDED",
        }
    }

    /// Whether the state machine allows `self -> to`.
    ///
    /// The cloud moves orders up to ROUTED and decides refunds; the store takes them from
    /// ROUTED to PICKED_UP. A handoff may come straight from READY: the rider's assignment is
    /// cloud-owned and may not have reached an offline store. Cancellation is honoured until
    /// the handoff.
    pub fn can_become(self, to: Self) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Pending, Confirmed)
                | (Confirmed, Routed)
                | (Routed, Accepted)
                | (Accepted, Picking)
                | (Picking, Packed)
                | (Packed, Ready)
                | (Ready, Assigned)
                | (Ready | Assigned, PickedUp)
                | (PickedUp, Delivered)
                | (Delivered, Closed)
                | (
                    Pending | Confirmed | Routed | Accepted | Picking | Packed | Ready | Assigned,
                    Cancelled
                )
                | (Cancelled | Delivered | Closed, Refunded)
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is none of the lifecycle's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        use Status::*;
        [
            Pending, Confirmed, Routed, Accepted, Picking, Packed, Ready, Assigned, PickedUp,
            Delivered, Closed, Cancelled, Refunded,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// What a ledger row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveKind {
    Receive,
    Pick,
    Reserve,
    Release,
    Adjust,
    Count,
    Damage,
    Expiry,
    Return,
}

impl MoveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Pick => "pick",
            Self::Reserve => "reserve",
            Self::Release => "release",
            Self::Adjust => "adjust",
            Self::Count => "count",
            Self::Damage => "damage",
            Self::Expiry => "expiry",
            Self::Return => "return",
        }
    }

    /// Whether the move changes what is on the shelf (as opposed to what is held for orders).
    pub fn physical(self) -> bool {
        !matches!(self, Self::Reserve | Self::Release)
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;

    #[test]
    fn state_machine() {
        assert!(Routed.can_become(Accepted));
        assert!(Ready.can_become(PickedUp));
        assert!(Picking.can_become(Cancelled));
        assert!(!PickedUp.can_become(Cancelled));
        assert!(!Accepted.can_become(Packed));
        assert!(!Packed.can_become(Picking));
        assert_eq!("PICKED_UP".parse::<super::Status>().ok(), Some(PickedUp));
    }
}
