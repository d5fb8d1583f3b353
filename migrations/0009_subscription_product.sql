-- Plans follow products as well as prices: the product of the price that carries the plan, so a
-- product mapped to a plan in the catalog grants that plan to its existing subscribers at once.
ALTER TABLE subscriptions ADD COLUMN product_id TEXT;
