//! Errors of the riders module, as values the daemon and the enrolment endpoint can match on.

use std::path::PathBuf;

/// Anything that can go wrong starting the riders service, enrolling or revoking a rider.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store database: {0}")]
    Store(#[from] flashkart_sync::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("io error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid riders configuration: {0}")]
    Config(String),
    #[error("the MQTT broker did not start: {0}")]
    Broker(String),
    #[error("rider `{0}` is not on this store's roster or is not active")]
    UnknownRider(String),
    #[error("rider id `{0}` is not alphanumeric (it is one level of the rider's topics)")]
    InvalidRiderId(String),
    #[error("the enrolment code is wrong or was already used")]
    BadEnrolmentCode,
    /// The rider has no code that could work (none synced yet, the last one used or expired):
    /// refused like a wrong code, but no guess was made against a secret, so the enrolment
    /// throttle does not count it (a phone that scans its QR code before the code has synced
    /// is not locked out).
    #[error("the enrolment code is wrong or was already used")]
    NoPendingCode,
    #[error("rider `{0}` was revoked at this store")]
    Revoked(String),
    #[error("the certificate signing request is not usable: {0}")]
    BadCsr(String),
}

/// Why the order desk refused a handoff or a delivery; sent back to the rider as a refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeskError {
    #[error("order {0} is not known here")]
    UnknownOrder(String),
    #[error("rider {rider_id} has no accepted assignment for order {order_id}")]
    NotAssigned { order_id: String, rider_id: String },
    #[error("label {label_id} is not order {order_id}'s bag")]
    WrongLabel { order_id: String, label_id: String },
    #[error("order {order_id} cannot go from {from} to {to}")]
    BadTransition {
        order_id: String,
        from: String,
        to: String,
    },
    #[error("order {order_id} was not handed to rider {rider_id}")]
    NotPickedUp { order_id: String, rider_id: String },
    #[error("the customer's PIN for order {order_id} is wrong ({left} tries left)")]
    WrongPin { order_id: String, left: u32 },
    #[error("order {0} is locked after wrong PINs: call support")]
    PinLocked(String),
    #[error("order {0} is contactless: the delivery needs a photo reference")]
    PhotoRequired(String),
    #[error(
        "order {order_id} is paid in cash ({due_minor} minor units of {currency} due): say \
         how much you collected"
    )]
    CashAmountRequired {
        order_id: String,
        due_minor: i64,
        currency: String,
    },
    #[error("order {order_id}: {amount_minor} is not an amount of cash (0..=10^10 minor units)")]
    InvalidAmount { order_id: String, amount_minor: i64 },
    #[error("the order desk failed: {0}")]
    Internal(String),
}

impl DeskError {
    /// The short code a rider's device gets on its error topic.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownOrder(_) => "unknown_order",
            Self::NotAssigned { .. } => "not_assigned",
            Self::WrongLabel { .. } => "wrong_label",
            Self::BadTransition { .. } => "bad_transition",
            Self::NotPickedUp { .. } => "not_picked_up",
            Self::WrongPin { .. } => "wrong_pin",
            Self::PinLocked(_) => "pin_locked",
            Self::PhotoRequired(_) => "photo_required",
            Self::CashAmountRequired { .. } => "cash_amount_required",
            Self::InvalidAmount { .. } => "invalid_amount",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<flashkart_sync::Error> for DeskError {
    fn from(error: flashkart_sync::Error) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<rusqlite::Error> for DeskError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Internal(error.to_string())
    }
}
