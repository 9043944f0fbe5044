-- Payment orders: what is paid for (a donation) split from the payment. An
-- order holds what is charged, how, under which key generation and request
-- format, the PaymentIntent, the lease and its fencing token, the status
-- and what was taken back; the donation keeps what the donor gave. The
-- line of waiting work is the line of orders, and a donation's order
-- shares its seq, its place in that line.
CREATE TABLE payment_orders (
	seq               INTEGER PRIMARY KEY,
	id                TEXT NOT NULL UNIQUE,
	kind              TEXT NOT NULL,
	pays_for          TEXT NOT NULL,
	campaign_id       TEXT NOT NULL,
	amount            INTEGER NOT NULL,
	currency          TEXT NOT NULL,
	payment_method    TEXT NOT NULL,
	client_addr       TEXT NOT NULL,
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
	created_at        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL
);

-- Every donation gets its order, in whatever state it stands. Its id is the
-- donation's with the order prefix (unique, and in creation order like a
-- new id). Its key generation began before orders, so it keeps the request
-- format of then (0): a key in flight is sent again with the very
-- parameters it was first sent with.
INSERT INTO payment_orders (seq, id, kind, pays_for, campaign_id, amount, currency, payment_method, client_addr,
	status, attempt, key_since, format, payment_intent_id, client_secret, next_action, failure_code, action_since,
	claimed_by, lease_until, token, refunded, disputed, created_at, updated_at)
SELECT seq, 'po_' || substr(id, 5), 'donation', id, campaign_id, amount, currency, payment_method, client_addr,
	status, attempt, key_since, 0, payment_intent_id, client_secret, next_action, failure_code, action_since,
	claimed_by, lease_until, 0, refunded, disputed, created_at, updated_at
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
	payment_method  TEXT NOT NULL, -- the one given; the order's is the one charged
	anonymous       INTEGER NOT NULL,
	message         TEXT NOT NULL,
	declaration     TEXT,          -- JSON object, or NULL
	created_at      INTEGER NOT NULL
);
INSERT INTO donations (seq, id, campaign_id, idempotency_key, key_hash, request_hash, amount, currency, email, name,
	payment_method, anonymous, message, declaration, created_at)
SELECT seq, id, campaign_id, idempotency_key, key_hash, request_hash, amount, currency, email, name,
	payment_method, anonymous, message, declaration, created_at
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
