//! Black-box tests over HTTP: the real app on a random port with a fresh database per test.
//! The engine is SQLite unless `TEST_DATABASE_URL` points at PostgreSQL (see helpers/app.rs).

mod accounts;
mod addresses;
mod admin;
mod admin_pages;
mod audit;
mod billing;
mod catalog_check;
mod cli;
mod codes;
mod deploy;
mod devices;
mod edge;
mod email;
mod gating;
mod helpers;
mod hygiene;
mod interop;
mod keys;
mod lockout;
mod outbound;
mod pages;
mod passkeys;
mod prehijack;
mod proxy;
mod revocation;
mod scaleout;
mod second_factor;
mod sessions;
mod social;
mod suspension;
mod timing;
mod tokens;
