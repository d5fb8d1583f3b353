//! Plan-tier gating: the access policy × gated routes matrix for JSON and HTML, immediacy of
//! changes across instances, forward-auth decisions, and where a login returns to.

mod forward;
mod instances;
mod login;
mod roles;
mod routes;
