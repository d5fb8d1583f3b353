//! A Stripe subscription as tollgate keeps it ([`Snapshot`]), read from an event's JSON in any API
//! version or from async-stripe's typed object.

use serde::Deserialize;
use serde_json::Value;

use crate::billing::catalog::Catalog;
use crate::billing::status::Status;

/// The fields of a Stripe subscription tollgate keeps. Parsed from any API version: unknown
/// fields are ignored and only `id`, `customer` and `status` are required.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// `sub_…`.
    pub id: String,
    /// `cus_…`.
    pub customer: String,
    /// Stripe's status (unknown statuses are kept and grant nothing).
    pub status: Status,
    /// Every item: the plan's price, and add-ons.
    pub items: Vec<Item>,
    /// End of the current period (the item's, or the subscription's in older API versions).
    pub current_period_end: Option<i64>,
    /// Whether it cancels at the period end.
    pub cancel_at_period_end: bool,
    /// When it is scheduled to cancel.
    pub cancel_at: Option<i64>,
    /// End of the trial.
    pub trial_end: Option<i64>,
    /// When it was canceled.
    pub canceled_at: Option<i64>,
    /// When it ended.
    pub ended_at: Option<i64>,
}

/// One item of a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// `price_…`.
    pub price_id: String,
    /// The price's `prod_…`, when the object says.
    pub product_id: Option<String>,
    /// How many.
    pub quantity: i64,
}

#[derive(Deserialize)]
struct RawSubscription {
    id: String,
    customer: Value,
    status: String,
    #[serde(default)]
    items: Option<RawItems>,
    #[serde(default)]
    current_period_end: Option<i64>,
    #[serde(default)]
    cancel_at_period_end: Option<bool>,
    #[serde(default)]
    cancel_at: Option<i64>,
    #[serde(default)]
    trial_end: Option<i64>,
    #[serde(default)]
    canceled_at: Option<i64>,
    #[serde(default)]
    ended_at: Option<i64>,
}

#[derive(Deserialize)]
struct RawItems {
    #[serde(default)]
    data: Vec<RawItem>,
}

#[derive(Deserialize)]
struct RawItem {
    #[serde(default)]
    price: Option<Value>,
    #[serde(default)]
    quantity: Option<i64>,
    #[serde(default)]
    current_period_end: Option<i64>,
}

/// An id that may be expanded into an object.
pub fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

impl Snapshot {
    /// Reads a subscription object (from an event or from the API).
    pub fn from_json(v: &Value) -> Option<Self> {
        let raw: RawSubscription = serde_json::from_value(v.clone()).ok()?;
        let item = raw.items.as_ref().and_then(|i| i.data.first());
        let items = raw.items.as_ref().map_or(Vec::new(), |i| {
            i.data
                .iter()
                .filter_map(|i| {
                    let price = i.price.as_ref()?;
                    Some(Item {
                        price_id: id_of(price)?,
                        product_id: price.get("product").and_then(id_of),
                        quantity: i.quantity.unwrap_or(1),
                    })
                })
                .collect()
        });
        Some(Self {
            id: raw.id,
            customer: id_of(&raw.customer)?,
            status: Status::parse(&raw.status),
            items,
            current_period_end: item
                .and_then(|i| i.current_period_end)
                .or(raw.current_period_end),
            cancel_at_period_end: raw.cancel_at_period_end.unwrap_or(false),
            cancel_at: raw.cancel_at,
            trial_end: raw.trial_end,
            canceled_at: raw.canceled_at,
            ended_at: raw.ended_at,
        })
    }

    /// Converts the typed object async-stripe returns.
    pub fn from_stripe(s: &stripe_billing::Subscription) -> Self {
        let item = s.items.data.first();
        Self {
            id: s.id.to_string(),
            customer: s.customer.id().to_string(),
            status: Status::parse(s.status.as_str()),
            items: s
                .items
                .data
                .iter()
                .map(|i| Item {
                    price_id: i.price.id.to_string(),
                    product_id: Some(i.price.product.id().to_string()),
                    quantity: i.quantity.map_or(1, |q| q as i64),
                })
                .collect(),
            current_period_end: item.map(|i| i.current_period_end),
            cancel_at_period_end: s.cancel_at_period_end,
            cancel_at: s.cancel_at,
            trial_end: s.trial_end,
            canceled_at: s.canceled_at,
            ended_at: s.ended_at,
        }
    }
}

impl Item {
    /// The plan the catalog gives this item's price (or product).
    pub fn plan<'c>(&self, catalog: &'c Catalog) -> Option<&'c crate::billing::catalog::Plan> {
        catalog.plan_for(&self.price_id, self.product_id.as_deref())
    }
}

impl Snapshot {
    /// The item that carries the plan: among the items whose price the catalog maps to a plan,
    /// the highest tier (add-ons, prices the catalog does not know, are never taken for the
    /// plan); without any, the first item (kept, so a catalog change can map it later).
    pub fn plan_item(&self, catalog: &Catalog) -> Option<&Item> {
        self.items
            .iter()
            .filter_map(|i| i.plan(catalog).map(|p| (p.tier, i)))
            .max_by_key(|(tier, _)| *tier)
            .map(|(_, i)| i)
            .or(self.items.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshots_read_current_and_older_api_shapes() {
        let current = json!({
            "id": "sub_1", "customer": "cus_1", "status": "active", "cancel_at_period_end": false,
            "items": {"data": [{"price": {"id": "price_1", "product": "prod_1"}, "quantity": 2, "current_period_end": 200}]},
            "some_future_field": {"nested": true}
        });
        let snap = Snapshot::from_json(&current).unwrap();
        let item = Item {
            price_id: "price_1".into(),
            product_id: Some("prod_1".into()),
            quantity: 2,
        };
        assert_eq!(snap.items, [item]);
        assert_eq!(snap.current_period_end, Some(200));

        let older = json!({
            "id": "sub_1", "customer": {"id": "cus_1", "object": "customer"}, "status": "brand_new_status",
            "current_period_end": 100, "items": {"data": [{"price": "price_1"}]}
        });
        let snap = Snapshot::from_json(&older).unwrap();
        assert_eq!(snap.customer, "cus_1");
        assert_eq!(snap.status.as_str(), "brand_new_status");
        assert_eq!(snap.current_period_end, Some(100));
        assert_eq!(
            snap.items[0].product_id, None,
            "an unexpanded price names no product"
        );
        assert!(Snapshot::from_json(&json!({"id": "sub_1"})).is_none());
    }
}
