//! The Stripe adapter against a real HTTP peer, localstripe: authorise with manual capture,
//! partial capture, void, full and partial refunds, declines at attach and at confirmation,
//! finding an authorisation again by its idempotency key, an unreachable or restarted gateway,
//! webhooks signed by localstripe checked by our verifier, and a card registered in the browser
//! through a SetupIntent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flashkart_cloud::payments::gateway::stripe::{Secret, StripeConfig, StripeGateway};
use flashkart_cloud::payments::gateway::{
    AuthoriseRequest, Gateway, GatewayError, Intent, IntentStatus,
};
use flashkart_cloud::payments::webhook::{self, Event, WebhookError};
use flashkart_tests::localstripe::{LocalStripe, WebhookReceiver};

const GOOD_CARD: &str = "4242424242424242";
/// Declined when charged (at confirmation).
const DECLINED_AT_CHARGE: &str = "4000000000000341";
/// Declined when attached to a customer.
const DECLINED_AT_ATTACH: &str = "4000000000000002";

fn gateway_for(base_url: &str) -> StripeGateway {
    StripeGateway::new(StripeConfig {
        api_base: base_url.to_owned(),
        secret_key: Secret::new(flashkart_tests::localstripe::SECRET_KEY),
        connect_timeout_ms: 2_000,
        request_timeout_ms: 10_000,
        ..StripeConfig::default()
    })
    .expect("gateway")
}

fn now_unix() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds")
}

/// A customer with a saved card, and the request to authorise `amount_minor` EUR on it.
async fn customer_with_card(
    stripe: &LocalStripe,
    gateway: &StripeGateway,
    name: &str,
    card: &str,
    amount_minor: i64,
) -> AuthoriseRequest {
    let gateway_customer = gateway
        .create_customer(&format!("cust-{name}"), &format!("customer-{name}"))
        .await
        .expect("create customer");
    assert!(gateway_customer.starts_with("cus_"), "{gateway_customer}");
    AuthoriseRequest {
        idempotency_key: format!("authorise-{name}"),
        order_id: format!("order-{name}"),
        customer_id: format!("cust-{name}"),
        gateway_customer,
        payment_method: stripe.create_payment_method(card).await,
        amount_minor,
        currency: "EUR".into(),
    }
}

async fn authorised(stripe: &LocalStripe, gateway: &StripeGateway, name: &str) -> Intent {
    let request = customer_with_card(stripe, gateway, name, GOOD_CARD, 5000).await;
    let intent = gateway.authorise(&request).await.expect("authorise");
    assert_eq!(intent.status, IntentStatus::RequiresCapture, "{intent:?}");
    intent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorise_then_capture_part_of_it() {
    let stripe = LocalStripe::start().await;
    let gateway = gateway_for(&stripe.base_url());
    let request = customer_with_card(&stripe, &gateway, "capture", GOOD_CARD, 5000).await;

    let intent = gateway.authorise(&request).await.expect("authorise");
    assert!(intent.id.starts_with("pi_"), "{intent:?}");
    assert_eq!(intent.status, IntentStatus::RequiresCapture);
    assert_eq!(intent.amount_minor, 5000);
    assert_eq!(intent.captured_minor, 0);
    assert_eq!(intent.currency, "EUR");
    assert_eq!(
        intent.gateway_customer.as_deref(),
        Some(request.gateway_customer.as_str())
    );

    // Only 42.00 of the 50.00 was delivered.
    let captured = gateway
        .capture(&intent.id, 4200, "capture-capture")
        .await
        .expect("capture");
    assert_eq!(captured.status, IntentStatus::Succeeded, "{captured:?}");
    assert_eq!(captured.amount_minor, 5000);
    assert_eq!(captured.captured_minor, 4200);
    assert_eq!(gateway.intent(&intent.id).await.expect("intent"), captured);

    // A second capture is refused, not retried.
    let again = gateway.capture(&intent.id, 4200, "capture-again").await;
    assert!(
        matches!(again, Err(GatewayError::Refused { status: 400, .. })),
        "{again:?}"
    );
    stripe.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_voids_an_authorisation() {
    let stripe = LocalStripe::start().await;
    let gateway = gateway_for(&stripe.base_url());
    let intent = authorised(&stripe, &gateway, "cancel").await;

    let canceled = gateway
        .cancel(&intent.id, "cancel-1")
        .await
        .expect("cancel");
    assert_eq!(canceled.status, IntentStatus::Canceled, "{canceled:?}");
    assert_eq!(canceled.captured_minor, 0);
    assert_eq!(
        gateway.intent(&intent.id).await.expect("intent").status,
        IntentStatus::Canceled
    );
    // Stripe refuses to capture a voided authorisation; localstripe captures its charge anyway
    // but still reports the intent canceled. Either way it is never reported captured.
    let capture = gateway.capture(&intent.id, 5000, "cancel-capture").await;
    assert!(
        matches!(
            capture,
            Err(GatewayError::Refused { .. })
                | Ok(Intent {
                    status: IntentStatus::Canceled,
                    ..
                })
        ),
        "{capture:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_in_full_and_in_parts() {
    let stripe = LocalStripe::start().await;
    let gateway = gateway_for(&stripe.base_url());

    let full = authorised(&stripe, &gateway, "refund-full").await;
    gateway
        .capture(&full.id, 5000, "refund-full-capture")
        .await
        .expect("capture");
    let refund = gateway
        .refund(&full.id, 5000, "refund-full-1")
        .await
        .expect("refund");
    assert!(refund.id.starts_with("re_"), "{refund:?}");
    assert_eq!(refund.amount_minor, 5000);
    assert_eq!(refund.idempotency_key.as_deref(), Some("refund-full-1"));
    assert_eq!(
        gateway.refunds(&full.id).await.expect("refunds"),
        vec![refund]
    );

    // Captured in part, then two items refunded separately.
    let parts = authorised(&stripe, &gateway, "refund-parts").await;
    gateway
        .capture(&parts.id, 4200, "refund-parts-capture")
        .await
        .expect("capture");
    let first = gateway
        .refund(&parts.id, 1000, "refund-parts-1")
        .await
        .expect("first refund");
    let second = gateway
        .refund(&parts.id, 700, "refund-parts-2")
        .await
        .expect("second refund");
    let mut listed = gateway.refunds(&parts.id).await.expect("refunds");
    listed.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
    // Only the refunds asked for: localstripe's record of the 8.00 never captured is not one.
    assert_eq!(listed, vec![first, second]);
    assert_eq!(listed.iter().map(|r| r.amount_minor).sum::<i64>(), 1700);
    let intent = gateway.intent(&parts.id).await.expect("intent");
    assert_eq!(intent.captured_minor, 4200, "{intent:?}");
    // The first payment's refunds are not this one's.
    assert_eq!(gateway.refunds(&full.id).await.expect("refunds").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_cards_are_declined() {
    let stripe = LocalStripe::start().await;
    let gateway = gateway_for(&stripe.base_url());

    let request = customer_with_card(&stripe, &gateway, "charge", DECLINED_AT_CHARGE, 5000).await;
    let declined = gateway.authorise(&request).await;
    assert!(
        matches!(&declined, Err(GatewayError::Declined { code, .. }) if code == "card_declined"),
        "{declined:?}"
    );
    assert!(!declined.as_ref().is_err_and(GatewayError::is_retryable));

    let request = customer_with_card(&stripe, &gateway, "attach", DECLINED_AT_ATTACH, 5000).await;
    let declined = gateway.authorise(&request).await;
    assert!(
        matches!(&declined, Err(GatewayError::Declined { code, .. }) if code == "card_declined"),
        "{declined:?}"
    );
    // Declined at attach: no payment intent was made for it.
    assert_eq!(
        gateway
            .find_authorisation(&request)
            .await
            .expect("find_authorisation"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorisation_is_found_by_its_key() {
    let stripe = LocalStripe::start().await;
    let gateway = gateway_for(&stripe.base_url());
    let request = customer_with_card(&stripe, &gateway, "find", GOOD_CARD, 5000).await;
    // Other customers' and other orders' intents around it.
    authorised(&stripe, &gateway, "find-other").await;

    assert_eq!(
        gateway.find_authorisation(&request).await.expect("find"),
        None,
        "nothing made yet"
    );
    // The answer to this one is "lost": the retry asks first.
    let made = gateway.authorise(&request).await.expect("authorise");
    let found = gateway.find_authorisation(&request).await.expect("find");
    assert_eq!(found.as_ref(), Some(&made));

    let unknown_key = AuthoriseRequest {
        idempotency_key: "authorise-unknown".into(),
        ..request.clone()
    };
    assert_eq!(
        gateway
            .find_authorisation(&unknown_key)
            .await
            .expect("find"),
        None
    );
    let other_order = AuthoriseRequest {
        order_id: "order-other".into(),
        ..request.clone()
    };
    assert_eq!(
        gateway
            .find_authorisation(&other_order)
            .await
            .expect("find"),
        None
    );
    // Found in whatever state it is in now.
    gateway
        .capture(&made.id, 5000, "find-capture")
        .await
        .expect("capture");
    let found = gateway
        .find_authorisation(&request)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.status, IntentStatus::Succeeded);
    assert_eq!(found.captured_minor, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gateway_is_unavailable() {
    let mut stripe = LocalStripe::start().await;
    let gateway = gateway_for(&stripe.base_url());
    let intent = authorised(&stripe, &gateway, "down").await;

    // Nothing listens there at all.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let nowhere = gateway_for(&format!("http://{closed}"));
    let answer = nowhere.intent(&intent.id).await;
    assert!(
        matches!(&answer, Err(GatewayError::Unavailable(_))),
        "{answer:?}"
    );

    // The gateway goes down at capture time: the capture is retryable, and nothing happened.
    stripe.go_down().await;
    let answer = gateway.capture(&intent.id, 5000, "down-capture").await;
    assert!(
        matches!(&answer, Err(GatewayError::Unavailable(_))),
        "{answer:?}"
    );
    assert!(answer.as_ref().is_err_and(GatewayError::is_retryable));
    let answer = gateway.intent(&intent.id).await;
    assert!(
        matches!(&answer, Err(GatewayError::Unavailable(_))),
        "{answer:?}"
    );
    stripe.come_up().await;
    assert_eq!(
        gateway.intent(&intent.id).await.expect("intent").status,
        IntentStatus::RequiresCapture
    );

    // A real restart of the stand-in keeps its state and its URL.
    stripe.restart().await;
    let captured = gateway
        .capture(&intent.id, 5000, "down-capture")
        .await
        .expect("capture after restart");
    assert_eq!(captured.status, IntentStatus::Succeeded);
    assert_eq!(captured.captured_minor, 5000);
    stripe.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstripes_webhook_signatures_verify() {
    const SECRET: &str = "whsec_flashkart_test_secret";
    let mut stripe = LocalStripe::start().await;
    let mut receiver = WebhookReceiver::start().await;
    stripe
        .configure_webhook(
            "flashkart",
            &receiver.url(),
            SECRET,
            Some(&["payment_intent.succeeded", "payment_intent.payment_failed"]),
        )
        .await;
    let gateway = gateway_for(&stripe.base_url());
    let intent = authorised(&stripe, &gateway, "webhook").await;
    gateway
        .capture(&intent.id, 3000, "webhook-capture")
        .await
        .expect("capture");

    let delivery = receiver.next(Duration::from_secs(20)).await;
    assert!(delivery.signature.starts_with("t="), "{delivery:?}");
    assert_eq!(
        webhook::verify(
            &delivery.signature,
            &delivery.body,
            SECRET,
            now_unix(),
            webhook::DEFAULT_TOLERANCE_S
        ),
        Ok(())
    );
    let event = Event::parse(&delivery.body).expect("event");
    assert_eq!(event.kind, "payment_intent.succeeded");
    assert_eq!(event.object_id, intent.id);
    assert!(event.id.starts_with("evt_"), "{event:?}");
    assert_eq!(event.object["status"], "succeeded");

    // The same delivery does not verify with another secret, altered, or replayed much later.
    assert_eq!(
        webhook::verify(
            &delivery.signature,
            &delivery.body,
            "whsec_other",
            now_unix(),
            300
        ),
        Err(WebhookError::Mismatch)
    );
    let mut altered = delivery.body.clone();
    altered.extend_from_slice(b" ");
    assert_eq!(
        webhook::verify(&delivery.signature, &altered, SECRET, now_unix(), 300),
        Err(WebhookError::Mismatch)
    );
    assert!(matches!(
        webhook::verify(
            &delivery.signature,
            &delivery.body,
            SECRET,
            now_unix() + 3600,
            300
        ),
        Err(WebhookError::Stale { .. })
    ));

    // A decline is announced too.
    let request = customer_with_card(
        &stripe,
        &gateway,
        "webhook-decline",
        DECLINED_AT_CHARGE,
        5000,
    )
    .await;
    assert!(gateway.authorise(&request).await.is_err());
    let delivery = receiver.next(Duration::from_secs(20)).await;
    assert_eq!(
        webhook::verify(&delivery.signature, &delivery.body, SECRET, now_unix(), 300),
        Ok(())
    );
    let event = Event::parse(&delivery.body).expect("event");
    assert_eq!(event.kind, "payment_intent.payment_failed");
    assert_eq!(
        event.object["metadata"]["flashkart_key"],
        "authorise-webhook-decline"
    );
}

/// The customer app's card form: the cloud starts a SetupIntent, the browser confirms it at
/// the provider with the card and only the publishable key (as Stripe.js does), and the
/// payment method it gets back authorises like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_registered_in_the_browser_through_a_setup_intent_authorises() {
    let stripe = LocalStripe::start().await;
    let gateway = gateway_for(&stripe.base_url());
    let setup = gateway.card_setup("setup-browser-1").await.expect("setup");
    assert!(setup.id.starts_with("seti_"), "{setup:?}");
    assert!(setup.client_secret.starts_with(&setup.id), "{setup:?}");

    let browser = reqwest::Client::new();
    let confirm = |client_secret: &str| {
        browser
            .post(format!(
                "{}/v1/setup_intents/{}/confirm",
                stripe.base_url(),
                setup.id
            ))
            .header("origin", "http://127.0.0.1:7800")
            .form(&[
                ("key", "pk_test_browser"),
                ("client_secret", client_secret),
                ("payment_method_data[type]", "card"),
                ("payment_method_data[card][number]", GOOD_CARD),
                ("payment_method_data[card][exp_month]", "12"),
                ("payment_method_data[card][exp_year]", "2040"),
                ("payment_method_data[card][cvc]", "123"),
            ])
            .send()
    };
    // Without the client secret the publishable key alone gets nothing.
    let guessed = confirm("seti_guess_secret_x").await.expect("confirm");
    assert!(!guessed.status().is_success(), "{}", guessed.status());
    let answer = confirm(&setup.client_secret).await.expect("confirm");
    assert!(answer.status().is_success(), "{}", answer.status());
    // The page reads the answer from another origin: the provider must allow it.
    assert_eq!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://127.0.0.1:7800")
    );
    let body: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(body["status"], "succeeded", "{body}");
    let payment_method = body["payment_method"]
        .as_str()
        .expect("payment method")
        .to_owned();
    assert!(payment_method.starts_with("pm_"), "{body}");

    let gateway_customer = gateway
        .create_customer("cust-browser", "customer-browser")
        .await
        .expect("customer");
    let intent = gateway
        .authorise(&AuthoriseRequest {
            idempotency_key: "authorise-browser".into(),
            order_id: "order-browser".into(),
            customer_id: "cust-browser".into(),
            gateway_customer,
            payment_method,
            amount_minor: 1234,
            currency: "EUR".into(),
        })
        .await
        .expect("authorise");
    assert_eq!(intent.status, IntentStatus::RequiresCapture, "{intent:?}");
    stripe.stop().await;
}
