//! Payments on PostgreSQL, shared by instances: two instances' workers running over the same
//! pending gateway calls make each call once, never both at the same time, and the money is
//! booked once; a webhook event delivered to both is taken once. Always on the machine's
//! PostgreSQL, like `postgres_hq.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashkart_cloud::metrics::Metrics;
use flashkart_cloud::payments::gateway::stripe::Secret;
use flashkart_cloud::payments::gateway::{
    AuthoriseRequest, CardSetup, Gateway, GatewayError, GatewayFuture, Intent, IntentStatus, Refund,
};
use flashkart_cloud::payments::ledger::Account;
use flashkart_cloud::payments::{
    OrderToPay, PaymentChoice, PaymentError, Payments, PaymentsConfig, webhook,
};
use flashkart_cloud::postgres::{DatabaseUrl, Postgres};
use tokio_util::sync::CancellationToken;

/// Orders whose captures the two instances race over.
const ORDERS: usize = 12;
const TOTAL: i64 = 2_500;
const WEBHOOK_SECRET: &str = "whsec_postgres_payments";

/// A provider stand-in shared by both instances: holds every authorisation until captured,
/// counts the captures asked for per payment and how many are in flight at once, and takes
/// its time answering so that two instances making the same call would overlap.
#[derive(Debug, Default)]
struct Provider {
    captured: Mutex<BTreeMap<String, usize>>,
    in_flight: Mutex<BTreeMap<String, usize>>,
    overlaps: AtomicUsize,
}

impl Provider {
    fn intent(&self, id: &str) -> Intent {
        let captured = self.captured.lock().unwrap().get(id).copied().unwrap_or(0) > 0;
        Intent {
            id: id.to_owned(),
            gateway_customer: Some("cus_1".into()),
            status: if captured {
                IntentStatus::Succeeded
            } else {
                IntentStatus::RequiresCapture
            },
            amount_minor: TOTAL,
            captured_minor: if captured { TOTAL } else { 0 },
            currency: "EUR".into(),
        }
    }
}

fn unsupported<'a, T: Send + 'a>() -> GatewayFuture<'a, T> {
    Box::pin(async { Err(GatewayError::Unavailable("not in this test".into())) })
}

impl Gateway for Provider {
    fn card_setup<'a>(&'a self, _key: &'a str) -> GatewayFuture<'a, CardSetup> {
        unsupported()
    }

    fn create_customer<'a>(&'a self, _id: &'a str, _key: &'a str) -> GatewayFuture<'a, String> {
        Box::pin(async { Ok("cus_1".to_owned()) })
    }

    fn authorise<'a>(&'a self, request: &'a AuthoriseRequest) -> GatewayFuture<'a, Intent> {
        Box::pin(async move { Ok(self.intent(&format!("pi_{}", request.order_id))) })
    }

    fn find_authorisation<'a>(
        &'a self,
        request: &'a AuthoriseRequest,
    ) -> GatewayFuture<'a, Option<Intent>> {
        Box::pin(async move { Ok(Some(self.intent(&format!("pi_{}", request.order_id)))) })
    }

    fn capture<'a>(
        &'a self,
        intent_id: &'a str,
        _amount_minor: i64,
        _key: &'a str,
    ) -> GatewayFuture<'a, Intent> {
        Box::pin(async move {
            let already = {
                let mut in_flight = self.in_flight.lock().unwrap();
                let n = in_flight.entry(intent_id.to_owned()).or_default();
                *n += 1;
                *n > 1
            };
            if already {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            *self
                .captured
                .lock()
                .unwrap()
                .entry(intent_id.to_owned())
                .or_default() += 1;
            *self.in_flight.lock().unwrap().get_mut(intent_id).unwrap() -= 1;
            Ok(self.intent(intent_id))
        })
    }

    fn cancel<'a>(&'a self, _id: &'a str, _key: &'a str) -> GatewayFuture<'a, Intent> {
        unsupported()
    }

    fn refund<'a>(
        &'a self,
        _id: &'a str,
        _amount: i64,
        _key: &'a str,
    ) -> GatewayFuture<'a, Refund> {
        unsupported()
    }

    fn intent<'a>(&'a self, intent_id: &'a str) -> GatewayFuture<'a, Intent> {
        Box::pin(async move {
            // Slow enough that the two workers' rounds overlap.
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(self.intent(intent_id))
        })
    }

    fn refunds<'a>(&'a self, _id: &'a str) -> GatewayFuture<'a, Vec<Refund>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// One instance's payments service: its own connection pool on the shared database.
async fn instance(url: &DatabaseUrl, provider: &Arc<Provider>) -> Payments {
    let postgres = Postgres::connect(url).await.unwrap();
    let config = PaymentsConfig {
        webhook_secret: Some(Secret::new(WEBHOOK_SECRET)),
        ..PaymentsConfig::default()
    };
    Payments::open_postgres(
        postgres,
        config,
        Some(provider.clone() as Arc<dyn Gateway>),
        Arc::new(Metrics::default()),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_never_make_the_same_gateway_call() {
    let url = common::postgres::fresh_database();
    // HQ's tables first, as the cloud opens them: refunds' notifications go there.
    let hq_pool = Postgres::connect(&url).await.unwrap();
    flashkart_cloud::hq::Hq::open_postgres(hq_pool.clone())
        .await
        .unwrap();
    let provider = Arc::new(Provider::default());
    let a = instance(&url, &provider).await;
    let b = instance(&url, &provider).await;

    // Card orders authorised through either instance, then delivered: each has a pending
    // capture, as settling a delivered order leaves it.
    for n in 0..ORDERS {
        let order = OrderToPay {
            order_id: format!("o-{n}"),
            customer_id: "c-1".into(),
            store_id: "s1".into(),
            currency: "EUR".into(),
            items_minor: TOTAL,
            discount_minor: 0,
            delivery_fee_minor: 0,
            total_minor: TOTAL,
        };
        let choice = PaymentChoice::Card {
            payment_method: "pm_card_visa".into(),
        };
        let by = if n % 2 == 0 { &a } else { &b };
        by.authorise(&order, &choice).await.unwrap();
    }
    let client = hq_pool.client().await.unwrap();
    let now = flashkart_cloud::clock::now_rfc3339();
    client
        .execute(
            "INSERT INTO gateway_calls (idempotency_key, order_id, op, amount_minor, state,
                 next_attempt_at, created_at, updated_at)
             SELECT 'capture:' || order_id, order_id, 'capture', total_minor, 'pending', $1, $1, $1
             FROM payments",
            &[&now],
        )
        .await
        .unwrap();
    client
        .execute("UPDATE payments SET state = 'capturing'", &[])
        .await
        .unwrap();

    // Both workers take their rounds at the same time, twice over.
    let shutdown = CancellationToken::new();
    for _ in 0..2 {
        let (one, two) = tokio::join!(a.make_due_calls(&shutdown), b.make_due_calls(&shutdown));
        one.unwrap();
        two.unwrap();
    }

    assert_eq!(
        provider.overlaps.load(Ordering::SeqCst),
        0,
        "two instances made the same capture at once"
    );
    let captured = provider.captured.lock().unwrap().clone();
    assert_eq!(captured.len(), ORDERS, "{captured:?}");
    assert!(
        captured.values().all(|n| *n == 1),
        "a capture was made twice: {captured:?}"
    );
    for n in 0..ORDERS {
        let payment = a.payment(&format!("o-{n}")).await.unwrap().unwrap();
        assert_eq!(payment.state, "captured");
        assert_eq!(payment.captured_minor, TOTAL);
    }
    let pending: i64 = client
        .query_one(
            "SELECT count(*) FROM gateway_calls WHERE state = 'pending'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
    // Each capture booked once, and the books balance.
    let trial = b.trial_balance().await.unwrap();
    assert_eq!(trial.len(), 1);
    assert!(trial[0].is_balanced());
    assert_eq!(trial[0].debits_minor, TOTAL * ORDERS as i64);
    let balances = a.balances("EUR").await.unwrap();
    assert!(
        balances.contains(&("gateway_clearing".to_owned(), TOTAL * ORDERS as i64)),
        "{balances:?}"
    );
    let statement = a
        .statement(
            &Account::GatewayClearing,
            "EUR",
            "2000-01-01T00:00:00.000Z",
            "2999-01-01T00:00:00.000Z",
        )
        .await
        .unwrap();
    assert_eq!(statement.lines.len(), ORDERS);
    assert_eq!(statement.closing_minor, TOTAL * ORDERS as i64);

    // One webhook event delivered to both instances at once is taken by one of them only.
    let body = serde_json::json!({
        "id": "evt_twice",
        "type": "payment_intent.payment_failed",
        "created": 1,
        "data": {"object": {"id": "pi_o-1", "object": "payment_intent"}},
    })
    .to_string();
    let signature = webhook::sign(
        WEBHOOK_SECRET,
        flashkart_cloud::clock::now().unix_timestamp(),
        body.as_bytes(),
    );
    let (one, two) = tokio::join!(
        a.webhook(&signature, body.as_bytes()),
        b.webhook(&signature, body.as_bytes())
    );
    let taken = [&one, &two].iter().filter(|r| r.is_ok()).count();
    assert_eq!(taken, 1, "{one:?} {two:?}");
    assert!(
        [one, two]
            .into_iter()
            .any(|r| matches!(r, Err(PaymentError::Webhook(m)) if m.contains("received before")))
    );
    let flags = b.flags(10).await.unwrap();
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0].kind, "payment_failed");
}
