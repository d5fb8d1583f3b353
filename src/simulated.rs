//! Development without Stripe keys: the built-in simulator, started in process and seeded with
//! the catalog's prices (the `sim` feature; without it, start-up refuses to run without keys).

use crate::{
    billing::{catalog::Catalog, stripe::StripeApi},
    clock::Clock,
    config::Config,
};

/// The running simulator, when there is one (held by the state, so tests can drive it).
#[cfg(feature = "sim")]
pub type Running = Option<crate::sim::Simulator>;

/// Without the `sim` feature there is never a simulator.
#[cfg(not(feature = "sim"))]
pub type Running = Option<std::convert::Infallible>;

/// The first configured webhook secret, which a simulator signs with (else it makes one).
pub fn configured_webhook_secret(config: &Config) -> Option<String> {
    config
        .stripe_webhook_secrets
        .first()
        .map(|s| s.expose().to_owned())
}

/// Starts the simulator on a free loopback port, on tollgate's clock, with the catalog's prices
/// (their ids are written into the catalog), and a Stripe client that talks to it.
#[cfg(feature = "sim")]
pub async fn start(
    config: &Config,
    clock: &Clock,
    catalog: &mut Catalog,
    webhook_url: &str,
) -> anyhow::Result<(StripeApi, Running)> {
    let started = crate::sim::start(crate::sim::SimStart {
        clock: clock.clone(),
        bind: "127.0.0.1:0".parse()?,
        webhook_url: webhook_url.to_owned(),
        secret: configured_webhook_secret(config),
        prices: simulator_prices(catalog),
    })
    .await?;
    for ((_, _, _, price), id) in catalog.prices_mut().zip(started.price_ids) {
        price.stripe_id = id;
    }
    tracing::info!(url = started.sim.base_url(), "Stripe simulator running");
    let webhook_secrets = if config.stripe_webhook_secrets.is_empty() {
        vec![crate::config::Secret::new(started.secret)]
    } else {
        config.stripe_webhook_secrets.clone()
    };
    let stripe = StripeApi::simulator(started.sim.base_url(), webhook_secrets)?;
    Ok((stripe, Some(started.sim)))
}

/// A build without the simulator refuses development without keys.
#[cfg(not(feature = "sim"))]
pub async fn start(
    _: &Config,
    _: &Clock,
    _: &mut Catalog,
    _: &str,
) -> anyhow::Result<(StripeApi, Running)> {
    anyhow::bail!(crate::billing::stripe::NO_SIMULATOR)
}

#[cfg(feature = "sim")]
/// The catalog's prices for the simulator, in catalog order. Unnamed prices get the lookup key a
/// standalone simulator gives them, so another instance pointed at a simulator
/// (`STRIPE_API_BASE`) finds the same prices.
pub fn simulator_prices(catalog: &mut Catalog) -> Vec<crate::sim::SeedPrice> {
    catalog
        .prices_mut()
        .map(|(id, name, interval, price)| crate::sim::SeedPrice {
            product_name: name.to_owned(),
            interval: interval.as_str().to_owned(),
            amount: price.amount,
            currency: price.currency.clone(),
            reference: price
                .reference
                .clone()
                .unwrap_or_else(|| Catalog::default_lookup_key(id, interval)),
        })
        .collect()
}
