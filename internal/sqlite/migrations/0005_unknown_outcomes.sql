-- Unknown outcomes resolved in shared sweeps (floodgate.Sweeps). While the
-- outcome of an order's current key is unknown, unknown_from and
-- unknown_to bound when any PaymentIntent it made was created (the
-- provider's clock, Unix nanoseconds like every other time); sweeps counts
-- the complete sweeps over that window that found none, and swept_at is
-- when the last of them started; unknown_cause is the class of the failure
-- that hid the outcome, and absences counts the new keys that sweeps gave
-- the order because none was found, since its payer's last payment method.
-- Such an order is processing, held by no
-- claim (lease_until NULL) and out of the workers' line. Every order in
-- line today has none: the columns start NULL and 0, with no table rewrite.
ALTER TABLE payment_orders ADD COLUMN unknown_from INTEGER;
ALTER TABLE payment_orders ADD COLUMN unknown_to INTEGER;
ALTER TABLE payment_orders ADD COLUMN sweeps INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payment_orders ADD COLUMN swept_at INTEGER;
ALTER TABLE payment_orders ADD COLUMN unknown_cause TEXT;
ALTER TABLE payment_orders ADD COLUMN absences INTEGER NOT NULL DEFAULT 0;

-- The unknown orders, earliest window first then by place in line: only
-- they are in this index, however long the line of settled orders grows.
CREATE INDEX payment_orders_unknown ON payment_orders (unknown_from, seq) WHERE unknown_from IS NOT NULL;

-- Named leases that let one node at a time do a cluster's work (the
-- sweeper): held by owner until until, on the store's clock.
CREATE TABLE leases (
	name  TEXT PRIMARY KEY,
	owner TEXT NOT NULL,
	until INTEGER NOT NULL
);
