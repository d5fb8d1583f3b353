//! What the tests share: the app under test ([`app`]), accounts ([`users`]), Stripe and
//! tollgate's billing ([`stripe`]), Stripe events and their delivery ([`events`]), and an SMTP
//! sink ([`smtp`]). Everything is re-exported here, so tests `use crate::helpers::{…}`.

mod app;
mod events;
mod smtp;
mod stripe;
mod users;

pub use app::*;
pub use events::*;
pub use smtp::*;
pub use stripe::*;
pub use users::*;
