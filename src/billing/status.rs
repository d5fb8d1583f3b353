//! A subscription's status, as Stripe names it, and the statuses that never change again.

use std::fmt;

use serde::Serialize;

/// Stripe's subscription status. A status Stripe adds later is kept as sent (`Other`) and grants
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Paid and current.
    Active,
    /// In a free trial.
    Trialing,
    /// A renewal payment failed; Stripe retries.
    PastDue,
    /// Retries exhausted, the subscription kept open.
    Unpaid,
    /// Paused (a trial ended without a payment method, say).
    Paused,
    /// The first payment has not succeeded yet.
    Incomplete,
    /// The first payment never succeeded (terminal).
    IncompleteExpired,
    /// Ended (terminal).
    Canceled,
    /// A status this version does not know.
    Other(String),
}

impl Status {
    /// The statuses that never change again.
    pub const TERMINAL: [Status; 2] = [Status::Canceled, Status::IncompleteExpired];

    /// [`Status::TERMINAL`] as an SQL list, for `status NOT IN …` (a unit test keeps the two
    /// equal).
    pub const TERMINAL_SQL: &'static str = "('canceled', 'incomplete_expired')";

    /// The status Stripe sent.
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "trialing" => Self::Trialing,
            "past_due" => Self::PastDue,
            "unpaid" => Self::Unpaid,
            "paused" => Self::Paused,
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "canceled" => Self::Canceled,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Stripe's name for it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "active",
            Self::Trialing => "trialing",
            Self::PastDue => "past_due",
            Self::Unpaid => "unpaid",
            Self::Paused => "paused",
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::Canceled => "canceled",
            Self::Other(s) => s,
        }
    }

    /// True for a status that never changes again.
    pub fn is_terminal(&self) -> bool {
        Self::TERMINAL.contains(self)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(Self::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_kept() {
        for name in [
            "active",
            "trialing",
            "past_due",
            "unpaid",
            "paused",
            "incomplete",
            "incomplete_expired",
            "canceled",
            "brand_new_status",
        ] {
            assert_eq!(Status::parse(name).as_str(), name);
        }
        assert_eq!(
            Status::parse("brand_new_status"),
            Status::Other("brand_new_status".into())
        );
    }

    #[test]
    fn the_sql_list_names_exactly_the_terminal_statuses() {
        let listed: Vec<String> = Status::TERMINAL
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert_eq!(Status::TERMINAL_SQL, format!("({})", listed.join(", ")));
        assert!(Status::Canceled.is_terminal() && !Status::PastDue.is_terminal());
    }
}
