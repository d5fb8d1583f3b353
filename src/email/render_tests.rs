//! Every email template rendered, with every variable it names defined (strict: a name a template
//! uses and its sender does not give fails here), and the words of each case checked: billing
//! notices say what happens next for the subscription's state, and each footer fits why the
//! email was sent.

use minijinja::{Environment, UndefinedBehavior, Value, context};

use super::{Kind, TEMPLATES};

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_template(
        "email/layout.html",
        include_str!("../../templates/email/layout.html"),
    )
    .expect("layout");
    for (name, source) in TEMPLATES {
        env.add_template(name, source).expect("template");
    }
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Every variable any template reads, as a sender gives it.
fn common() -> Value {
    context! {
        product_name => "Acme Cloud",
        base_url => "https://app.example.com",
        link => "https://app.example.com/verify?token=tgv_x",
        provider => "GitHub",
        valid_for => "30 minutes",
        plan_name => "Pro",
        trial_end => "2026-12-14",
        name => "Laptop key",
        free_name => "Free",
        code => "123456",
        price => "$19.00",
        place => "DE",
        new_email => "new@example.com",
        left => 3,
        interval => "month",
        at => "2026-11-30 13:00 UTC",
        agent => "Firefox on Linux",
        cancelling => false,
        ended => false,
    }
}

fn render(kind: Kind, ext: &str, ctx: &Value) -> String {
    env()
        .get_template(&format!("email/{}.{ext}", kind.as_str()))
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| panic!("{} .{ext}: {e:#}", kind.as_str()))
}

#[test]
fn every_template_renders_with_what_its_sender_gives() {
    assert_eq!(TEMPLATES.len(), Kind::ALL.len() * 2);
    for kind in Kind::ALL {
        let text = render(kind, "txt", &common());
        let html = render(kind, "html", &common());
        assert!(text.starts_with("Subject: "), "{}: {text}", kind.as_str());
        assert!(
            text.lines().next().is_some_and(|s| s.len() > 12),
            "{}",
            kind.as_str()
        );
        assert!(html.contains("Acme Cloud"), "{}", kind.as_str());
        assert!(
            !html.contains("{{") && !text.contains("{{"),
            "{}",
            kind.as_str()
        );
    }
}

#[test]
fn each_footer_fits_why_the_email_was_sent() {
    let footer = |kind: Kind| render(kind, "html", &common());
    for kind in [Kind::PaymentFailed, Kind::TrialWillEnd] {
        let html = footer(kind);
        assert!(
            html.contains("because you subscribe to Acme Cloud"),
            "{html}"
        );
        assert!(!html.contains("asked for it"), "{html}");
    }
    for kind in [Kind::PasswordChanged, Kind::NewSignIn, Kind::PasskeyAdded] {
        let html = footer(kind);
        assert!(html.contains("security notice"), "{}", kind.as_str());
        assert!(!html.contains("you can ignore it"), "{}", kind.as_str());
    }
    for kind in [Kind::Verify, Kind::Reset, Kind::Magic] {
        let html = footer(kind);
        assert!(
            html.contains("someone asked for it with your address"),
            "{}",
            kind.as_str()
        );
    }
}

#[test]
fn a_trial_notice_says_what_happens_next() {
    let going_on = render(Kind::TrialWillEnd, "txt", &common());
    assert!(
        going_on.contains("your card is charged $19.00 per month"),
        "{going_on}"
    );
    let cancelling = render(
        Kind::TrialWillEnd,
        "txt",
        &context! { cancelling => true, ..common() },
    );
    assert!(
        cancelling
            .contains("your card will not be charged and your account moves to the Free plan"),
        "{cancelling}"
    );
    assert!(!cancelling.contains("is charged"), "{cancelling}");
    assert!(cancelling.contains("Resume the subscription before 2026-12-14"));
    let html = render(
        Kind::TrialWillEnd,
        "html",
        &context! { cancelling => true, ..common() },
    );
    assert!(!html.contains("is charged"), "{html}");
}

#[test]
fn a_failed_payment_asks_for_a_card_until_the_subscription_has_ended() {
    let retrying = render(Kind::PaymentFailed, "txt", &common());
    assert!(retrying.starts_with("Subject: Your Acme Cloud payment failed"));
    assert!(
        retrying.contains("update your card to keep your plan"),
        "{retrying}"
    );
    let ended = render(
        Kind::PaymentFailed,
        "txt",
        &context! { ended => true, ..common() },
    );
    assert!(ended.contains("the subscription has ended"), "{ended}");
    assert!(!ended.contains("update your card"), "{ended}");
    assert!(ended.contains("/pricing"), "{ended}");
}
