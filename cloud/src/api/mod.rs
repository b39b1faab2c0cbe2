//! The JSON API for customers and HQ: order intake and status, the catalog, store profiles,
//! coupons, customers and the per-store dashboard figures.
//!
//! Customers authenticate with a bearer token HQ issued, or with an account's session (bearer
//! or cookie, `customer_account.rs`); everything under `/admin/v1` takes HQ:
//! the admin token, or an HQ user's dashboard session (`hq_auth.rs`) within their role. Handlers name the caller they need as an extractor (`http/auth.rs`) and return
//! `Result<_, ApiError>`; every failure is `{"error", "message"}` with a status chosen in
//! `http/error.rs`, and a refused request writes nothing.

pub mod admin;
pub mod areas;
pub mod catalog;
pub mod customer;
pub mod customer_account;
pub mod customer_app;
pub mod dashboard;
pub mod hq_app;
pub mod hq_auth;
pub mod payments;
pub mod ratings;
pub mod storefront;
pub mod tracking;

use crate::http::ApiError;

/// Highest price, coupon amount or basket minimum accepted, in minor units (100 million in
/// major units): far above any grocery, far below where sums of 50 lines of 100 pieces could
/// come near `i64::MAX`.
pub const MAX_MONEY_MINOR: i64 = 10_000_000_000;

/// A text field of at most `max` bytes without control characters; `required` ones must not
/// be blank.
pub(crate) fn check_text(
    field: &str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), ApiError> {
    if (required && value.trim().is_empty())
        || value.len() > max
        || value.chars().any(char::is_control)
    {
        let least = if required { 1 } else { 0 };
        return Err(ApiError::Unprocessable(format!(
            "{field} must be {least}-{max} bytes without control characters"
        )));
    }
    Ok(())
}
