-- Payment orders: the tables of internal/sqlite's 0004_payment_orders.sql,
-- with PostgreSQL's types. An order keeps what the payment changes: its
-- status, key generation and request format, PaymentIntent, lease and
-- fencing token, and what was taken back. What is charged (amount,
-- currency, campaign, the payer's address, the payment method given) stays
-- with what it pays for, read with the order: a donation's order shares
-- its seq, and its id is the donation's under the order prefix
-- (floodgate.OrderIDOf), so accepting a gift writes a few bytes more and no
-- index more. The line of waiting work is the line of orders.
CREATE TABLE payment_orders (
	seq               bigint PRIMARY KEY,
	kind              text NOT NULL,
	payment_method    text, -- NULL: the one given with what it pays for
	status            text NOT NULL CHECK (status IN
		('accepted', 'processing', 'requires_action', 'succeeded', 'failed', 'canceled')),
	attempt           integer NOT NULL DEFAULT 0,
	key_since         timestamptz,
	format            integer NOT NULL,
	payment_intent_id text,
	client_secret     text,
	next_action       json, -- json, not jsonb: the provider's bytes come back as sent
	failure_code      text,
	action_since      timestamptz,
	claimed_by        text,
	lease_until       timestamptz,
	token             bigint NOT NULL DEFAULT 0,
	refunded          bigint NOT NULL DEFAULT 0,
	disputed          bigint NOT NULL DEFAULT 0,
	updated_at        timestamptz NOT NULL
);

-- Every donation gets its order, in whatever state it stands. Its key
-- generation began before orders, so it keeps the request format of then
-- (0): a key in flight is sent again with the very parameters it was first
-- sent with. The payment method the donation holds is the current one
-- (a new card replaced it there): it stays there.
INSERT INTO payment_orders (seq, kind, status, attempt, key_since, format, payment_intent_id, client_secret,
	next_action, failure_code, action_since, claimed_by, lease_until, token, refunded, disputed, updated_at)
SELECT seq, 'donation', status, attempt, key_since, 0, payment_intent_id, client_secret,
	next_action, failure_code, action_since, claimed_by, lease_until, 0, refunded, disputed, updated_at
FROM donations;

-- The line: only waiting orders are in this index, so its head is one
-- look-up however long the line grows.
CREATE INDEX payment_orders_waiting ON payment_orders (seq) WHERE status = 'accepted';
CREATE INDEX payment_orders_leased ON payment_orders (lease_until) WHERE status = 'processing';
CREATE INDEX payment_orders_action ON payment_orders (action_since) WHERE status = 'requires_action';
CREATE INDEX payment_orders_payment_intent ON payment_orders (payment_intent_id) WHERE payment_intent_id IS NOT NULL;

-- Fencing tokens: every claim, takeover and take-back draws a new one.
CREATE SEQUENCE claim_tokens;

-- The history is the order's.
ALTER TABLE donation_history RENAME TO order_history;
ALTER TABLE order_history RENAME COLUMN donation_seq TO order_seq;
ALTER INDEX donation_history_pkey RENAME TO order_history_pkey;

-- Donations keep what the donor gave: the columns the payment changes
-- moved to the order.
DROP INDEX donations_waiting, donations_leased, donations_claimed, donations_action, donations_payment_intent;
ALTER TABLE donations
	DROP COLUMN status,
	DROP COLUMN attempt,
	DROP COLUMN key_since,
	DROP COLUMN payment_intent_id,
	DROP COLUMN client_secret,
	DROP COLUMN next_action,
	DROP COLUMN failure_code,
	DROP COLUMN action_since,
	DROP COLUMN claimed_by,
	DROP COLUMN lease_until,
	DROP COLUMN updated_at,
	DROP COLUMN refunded,
	DROP COLUMN disputed;
