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

/// Why development without Stripe keys cannot start in a build without the simulator.
pub const NO_SIMULATOR: &str = "this build has no Stripe simulator (built without the `sim` feature): set STRIPE_SECRET_KEY, or build with default features";

/// Starts a simulator on `bind`, on `clock`, signing with the first configured webhook secret
/// (else one it makes), seeded with the catalog's prices; their ids are written into the
/// catalog. Used by `serve` (in process) and `stripe-sim` (standalone).
#[cfg(feature = "sim")]
pub async fn launch(
    config: &Config,
    clock: &Clock,
    catalog: &mut Catalog,
    bind: std::net::SocketAddr,
    webhook_url: &str,
) -> anyhow::Result<crate::sim::Started> {
    let mut started = crate::sim::start(crate::sim::SimStart {
        clock: clock.clone(),
        bind,
        webhook_url: webhook_url.to_owned(),
        secret: config
            .stripe_webhook_secrets
            .first()
            .map(|s| s.expose().to_owned()),
        prices: simulator_prices(catalog),
    })
    .await?;
    let ids = std::mem::take(&mut started.price_ids);
    for ((_, _, _, price), id) in catalog.prices_mut().zip(ids) {
        price.stripe_id = id;
    }
    Ok(started)
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
    let started = launch(config, clock, catalog, "127.0.0.1:0".parse()?, webhook_url).await?;
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
    anyhow::bail!(NO_SIMULATOR)
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

#[cfg(all(test, not(feature = "sim")))]
mod tests {
    #[tokio::test]
    async fn a_build_without_the_simulator_refuses_to_start_one() {
        let config = crate::config::Config::from_lookup(|_| None).expect("defaults are valid");
        let mut catalog = crate::billing::catalog::Catalog::demo();
        let refused = super::start(&config, &crate::clock::Clock::new(), &mut catalog, "x")
            .await
            .err()
            .expect("no simulator in this build");
        assert_eq!(refused.to_string(), super::NO_SIMULATOR);
    }
}
