//! tollgate: accounts, Stripe billing and plan-tier gating for SaaS products, in one service.
//!
//! Run it as a binary (`cargo run`) or mount [`app::build_router`] in your own axum app. Users
//! register and sign in with passwords and server-side sessions ([`auth`]); plans come from a
//! catalog ([`billing::catalog`]) and decide access ([`gate`]). Storage is SQLite by default and
//! PostgreSQL for production and several instances ([`db`]).

pub mod account;
pub mod app;
#[cfg(test)]
mod architecture;
pub mod audit;
pub mod auth;
pub mod base;
pub mod billing;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod email;
pub mod error;
pub mod extract;
pub mod gate;
pub mod ids;
pub mod outbound;
pub mod server;
#[cfg(feature = "sim")]
pub mod sim;
pub mod simulated;
pub mod state;
pub mod telemetry;
pub mod web;

pub use error::{AppError, Result};
