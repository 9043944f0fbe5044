-- Unknown outcomes resolved in shared sweeps: the columns and tables of
-- internal/sqlite's 0005_unknown_outcomes.sql, with PostgreSQL's types.
-- While the outcome of an order's current key is unknown, unknown_from and
-- unknown_to bound when any PaymentIntent it made was created (the
-- provider's clock); sweeps counts the complete sweeps over that window
-- that found none, and swept_at is when the last of them started;
-- unknown_cause is the class of the failure that hid the outcome, and
-- absences counts the new keys that sweeps gave the order because none was
-- found, since its payer's last payment method. Such an
-- order is processing, held by no claim (lease_until NULL) and out of the
-- workers' line. Every order in line today has none: the columns start
-- NULL and 0, added without a table rewrite.
ALTER TABLE payment_orders
	ADD COLUMN unknown_from timestamptz,
	ADD COLUMN unknown_to   timestamptz,
	ADD COLUMN sweeps       integer NOT NULL DEFAULT 0,
	ADD COLUMN swept_at     timestamptz,
	ADD COLUMN unknown_cause text,
	ADD COLUMN absences      integer NOT NULL DEFAULT 0;

-- The unknown orders, earliest window first then by place in line: only
-- they are in this index, however long the line of settled orders grows.
CREATE INDEX payment_orders_unknown ON payment_orders (unknown_from, seq) WHERE unknown_from IS NOT NULL;

-- Named leases that let one node at a time do the cluster's work (the
-- sweeper): held by owner until until, on the database's clock. Taken in
-- one statement (INSERT ... ON CONFLICT DO UPDATE ... WHERE), so no row
-- lock is held between round trips.
CREATE TABLE leases (
	name  text PRIMARY KEY,
	owner text NOT NULL,
	until timestamptz NOT NULL
);
