//! The settings of signed-in devices: where an approximate place comes from. In `check-config`
//! and README order, after the tokens'.

use super::{Fallback::Text, Setting};

/// The device settings.
pub(in crate::config) static DEVICES: &[Setting] = &[Setting::new(
    "TOLLGATE_LOCATION_HEADER",
    "header with an approximate place of the client set by a trusted platform proxy (e.g. Cloudflare's `CF-IPCountry`), shown in the list of signed-in devices and in new sign-in notices; tollgate never looks a place up itself",
    Text("none (no place shown)"),
    |r, c| {
        c.location_header = r.header()?;
        Ok(())
    },
    |c| c.location_header.clone().unwrap_or_default(),
)];
