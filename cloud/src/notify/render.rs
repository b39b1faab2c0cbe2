//! The text of the e-mails: plain text (no HTML to get wrong in a mail client), one subject
//! and body per kind, with the order id, what happened, amounts in the order's currency and a
//! link into the customer app.

use serde_json::Value;

use super::Kind;

/// An e-mail's subject and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Email {
    pub(super) subject: String,
    pub(super) body: String,
}

/// What an outbox row says, in words. `public_url` is where the customer app is.
pub(super) fn email(
    kind: Kind,
    order_id: Option<&str>,
    payload: &Value,
    public_url: &str,
) -> Email {
    let base = public_url.trim_end_matches('/');
    let order = order_id.unwrap_or("");
    let link = format!("{base}/#/orders/{order}");
    let text = |key: &str| payload[key].as_str().unwrap_or("").to_owned();
    let amount = |key: &str| {
        payload[key]
            .as_i64()
            .and_then(|minor| money(minor, payload["currency"].as_str().unwrap_or("")))
            .unwrap_or_else(|| "the amount".into())
    };
    let (subject, lines) = match kind {
        Kind::OrderConfirmed => (
            format!("Order {order} confirmed"),
            vec![
                format!("Thank you: we have your order {order}."),
                format!("Total: {}.", amount("total_minor")),
                "We will tell you when a rider is on the way.".into(),
            ],
        ),
        Kind::ItemsShort => {
            let mut lines = vec![format!(
                "The store could not find everything for your order {order}:"
            )];
            for line in payload["lines"].as_array().into_iter().flatten() {
                lines.push(format!(
                    "- {} of {} (line {})",
                    line["short_qty"].as_i64().unwrap_or(0),
                    line["product_id"].as_str().unwrap_or(""),
                    line["line_no"].as_i64().unwrap_or(0)
                ));
            }
            lines.push("You are not charged for what is missing.".into());
            (format!("Order {order}: items short"), lines)
        }
        Kind::LineSubstituted => (
            format!("Order {order}: an item was substituted"),
            vec![
                format!(
                    "The store replaced {} (line {}) with {} in your order {order}.",
                    text("product_id"),
                    payload["line_no"].as_i64().unwrap_or(0),
                    text("substitute_product_id")
                ),
                "You never pay more for a substitute than for what you ordered.".into(),
            ],
        ),
        Kind::RiderOnTheWay => (
            format!("Order {order} is on the way"),
            vec![format!(
                "A rider has picked up your order {order} and is on the way to you."
            )],
        ),
        Kind::Delivered => (
            format!("Order {order} delivered"),
            vec![format!("Your order {order} was delivered. Enjoy!")],
        ),
        Kind::Cancelled => (
            format!("Order {order} cancelled"),
            vec![format!(
                "Your order {order} was cancelled. Anything you paid for it is refunded."
            )],
        ),
        Kind::Refunded => (
            format!("Order {order}: refund of {}", amount("amount_minor")),
            vec![format!(
                "We refunded {} for your order {order}. It reaches your card within a few days.",
                amount("amount_minor")
            )],
        ),
        Kind::PasswordReset => {
            let reset = format!("{base}/#/reset/{}", text("token"));
            return Email {
                subject: "Reset your FlashKart password".into(),
                body: format!(
                    "Someone asked to reset the password of your FlashKart account.\n\n\
                     Choose a new one here (the link works once, for {} minutes):\n{reset}\n\n\
                     If it was not you, ignore this e-mail: your password stays as it is.\n",
                    payload["valid_minutes"].as_i64().unwrap_or(0)
                ),
            };
        }
    };
    Email {
        subject,
        body: format!("{}\n\nYour order: {link}\n", lines.join("\n")),
    }
}

/// `minor` units of `currency` as text (`12.34 EUR`), with the currency's own number of
/// decimals; `None` only for an amount whose magnitude does not fit (`i64::MIN`).
pub(super) fn money(minor: i64, currency: &str) -> Option<String> {
    let currency = currency.to_ascii_uppercase();
    // ISO 4217 exponents other than 2 among the currencies a shop might take.
    let decimals: u32 = match currency.as_str() {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "UGX" | "XAF" | "XOF" | "PYG" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "IQD" | "LYD" => 3,
        _ => 2,
    };
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.checked_abs()?;
    let unit = 10_i64.checked_pow(decimals)?;
    let whole = magnitude.checked_div(unit)?;
    let fraction = magnitude.checked_rem(unit)?;
    let number = if decimals == 0 {
        format!("{sign}{whole}")
    } else {
        format!(
            "{sign}{whole}.{fraction:0width$}",
            width = decimals as usize
        )
    };
    Some(if currency.is_empty() {
        number
    } else {
        format!("{number} {currency}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_have_their_currencys_decimals() {
        assert_eq!(money(1234, "eur").as_deref(), Some("12.34 EUR"));
        assert_eq!(money(5, "EUR").as_deref(), Some("0.05 EUR"));
        assert_eq!(money(-250, "USD").as_deref(), Some("-2.50 USD"));
        assert_eq!(money(1234, "JPY").as_deref(), Some("1234 JPY"));
        assert_eq!(money(1234, "KWD").as_deref(), Some("1.234 KWD"));
        assert_eq!(
            money(i64::MAX, "EUR").as_deref(),
            Some("92233720368547758.07 EUR")
        );
        assert_eq!(money(i64::MIN, "EUR"), None);
    }

    #[test]
    fn each_kind_says_what_happened_with_the_order_and_a_link() {
        let url = "https://shop.example/";
        let confirmed = email(
            Kind::OrderConfirmed,
            Some("o-1"),
            &json!({"total_minor": 1999, "currency": "EUR"}),
            url,
        );
        assert_eq!(confirmed.subject, "Order o-1 confirmed");
        assert!(
            confirmed.body.contains("Total: 19.99 EUR."),
            "{}",
            confirmed.body
        );
        assert!(confirmed.body.contains("https://shop.example/#/orders/o-1"));
        let refunded = email(
            Kind::Refunded,
            Some("o-1"),
            &json!({"amount_minor": 250, "currency": "EUR"}),
            url,
        );
        assert_eq!(refunded.subject, "Order o-1: refund of 2.50 EUR");
        let short = email(
            Kind::ItemsShort,
            Some("o-1"),
            &json!({"lines": [{"line_no": 2, "product_id": "milk", "short_qty": 1},
                              {"line_no": 3, "product_id": "eggs", "short_qty": 6}]}),
            url,
        );
        assert!(
            short
                .body
                .contains("- 1 of milk (line 2)\n- 6 of eggs (line 3)\n"),
            "{}",
            short.body
        );
        for kind in Kind::ALL {
            let text = email(kind, Some("o-1"), &json!({}), url);
            assert!(!text.subject.is_empty() && !text.body.is_empty());
            if kind != Kind::PasswordReset {
                assert!(text.subject.contains("o-1") && text.body.contains("#/orders/o-1"));
            }
        }
        let reset = email(
            Kind::PasswordReset,
            None,
            &json!({"token": "abc", "valid_minutes": 30}),
            url,
        );
        assert!(
            reset.body.contains("https://shop.example/#/reset/abc"),
            "{}",
            reset.body
        );
        assert!(reset.body.contains("30 minutes"));
    }
}
