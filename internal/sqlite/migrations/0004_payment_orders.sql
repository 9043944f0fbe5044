-- Payment orders: what is paid for (a donation) split from the payment. An
-- order keeps what the payment changes: its status, key generation and
-- request format, PaymentIntent, lease and fencing token, and what was
-- taken back. What is charged (amount, currency, campaign, the payer's
-- address, the payment method given) stays with what it pays for, read
-- with the order: a donation's order shares its seq, and its id is the
-- donation's under the order prefix (floodgate.OrderIDOf), so accepting a
-- gift writes a few bytes more and no index more. The line of waiting
-- work is the line of orders.
CREATE TABLE payment_orders (
	seq               INTEGER PRIMARY KEY,
	kind              TEXT NOT NULL,
	payment_method    TEXT,          -- NULL: the one given with what it pays for
	status            TEXT NOT NULL,
	attempt           INTEGER NOT NULL DEFAULT 0,
	key_since         INTEGER,
	format            INTEGER NOT NULL,
	payment_intent_id TEXT,
	client_secret     TEXT,
	next_action       TEXT,
	failure_code      TEXT,
	action_since      INTEGER,
	claimed_by        TEXT,
	lease_until       INTEGER,
	token             INTEGER NOT NULL DEFAULT 0,
	refunded          INTEGER NOT NULL DEFAULT 0,
	disputed          INTEGER NOT NULL DEFAULT 0,
	updated_at        INTEGER NOT NULL
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

-- The history is the order's.
ALTER TABLE donation_history RENAME TO order_history;
ALTER TABLE order_history RENAME COLUMN donation_seq TO order_seq;

-- Donations keep what the donor gave: the columns the payment changes
-- moved to the order. The table is made again without them (one copy,
-- where dropping each column would rewrite it each time).
ALTER TABLE donations RENAME TO donations_v3;
CREATE TABLE donations (
	seq             INTEGER PRIMARY KEY,
	id              TEXT NOT NULL UNIQUE,
	campaign_id     TEXT NOT NULL,
	idempotency_key TEXT NOT NULL,
	key_hash        INTEGER NOT NULL,
	request_hash    BLOB NOT NULL,
	amount          INTEGER NOT NULL,
	currency        TEXT NOT NULL,
	email           TEXT NOT NULL,
	name            TEXT NOT NULL,
	payment_method  TEXT NOT NULL,
	anonymous       INTEGER NOT NULL,
	message         TEXT NOT NULL,
	declaration     TEXT,          -- JSON object, or NULL
	client_addr     TEXT NOT NULL,
	created_at      INTEGER NOT NULL
);
INSERT INTO donations (seq, id, campaign_id, idempotency_key, key_hash, request_hash, amount, currency, email, name,
	payment_method, anonymous, message, declaration, client_addr, created_at)
SELECT seq, id, campaign_id, idempotency_key, key_hash, request_hash, amount, currency, email, name,
	payment_method, anonymous, message, declaration, client_addr, created_at
FROM donations_v3;
DROP TABLE donations_v3;

-- Counters drawn on in the transaction that uses them: claim_token is the
-- last fencing token issued (the process is the file's only writer, so a
-- row read and written under BEGIN IMMEDIATE is a sequence).
CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('claim_token', 0);
