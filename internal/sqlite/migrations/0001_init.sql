-- Campaigns, donations with their status history, and live totals.
-- Times are Unix nanoseconds (UTC). Money is integer minor units.

CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
);

CREATE TABLE campaigns (
	id                TEXT PRIMARY KEY,
	name              TEXT NOT NULL,
	currency          TEXT NOT NULL,
	goal              INTEGER NOT NULL,
	min_amount        INTEGER NOT NULL,
	max_amount        INTEGER NOT NULL,
	opens_at          INTEGER NOT NULL,
	closes_at         INTEGER,
	suggested_amounts TEXT NOT NULL, -- JSON array of integers
	tax_schemes       TEXT NOT NULL, -- JSON array of strings
	created_at        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL
);

CREATE TABLE totals (
	campaign_id   TEXT PRIMARY KEY REFERENCES campaigns (id),
	raised        INTEGER NOT NULL DEFAULT 0,
	donations     INTEGER NOT NULL DEFAULT 0,
	pending       INTEGER NOT NULL DEFAULT 0,
	pending_count INTEGER NOT NULL DEFAULT 0,
	waiting       INTEGER NOT NULL DEFAULT 0,
	updated_at    INTEGER NOT NULL
);

-- seq is the rowid, assigned by the store: dense, increasing, the place in
-- the one global line. Idempotency keys are unique per campaign; the store
-- enforces it through an in-memory index over key_hash (the file has one
-- writer process), because a B-tree index over random client keys would
-- dirty a page per insert and make every batch slower as the table grows.
CREATE TABLE donations (
	seq               INTEGER PRIMARY KEY,
	id                TEXT NOT NULL UNIQUE,
	campaign_id       TEXT NOT NULL,
	idempotency_key   TEXT NOT NULL,
	key_hash          INTEGER NOT NULL,
	request_hash      BLOB NOT NULL,
	amount            INTEGER NOT NULL,
	currency          TEXT NOT NULL,
	email             TEXT NOT NULL,
	name              TEXT NOT NULL,
	payment_method    TEXT NOT NULL,
	anonymous         INTEGER NOT NULL,
	message           TEXT NOT NULL,
	declaration       TEXT,          -- JSON object, or NULL
	client_addr       TEXT NOT NULL,
	status            TEXT NOT NULL,
	attempt           INTEGER NOT NULL DEFAULT 0,
	key_since         INTEGER,
	payment_intent_id TEXT,
	client_secret     TEXT,
	next_action       TEXT,
	failure_code      TEXT,
	action_since      INTEGER,
	claimed_by        TEXT,
	lease_until       INTEGER,
	created_at        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL
);

-- The line: only waiting rows are in this index, so its head is one look-up
-- however long the line grows.
CREATE INDEX donations_waiting ON donations (seq) WHERE status = 'accepted';
CREATE INDEX donations_leased ON donations (lease_until) WHERE status = 'processing';
CREATE INDEX donations_action ON donations (action_since) WHERE status = 'requires_action';
CREATE INDEX donations_payment_intent ON donations (payment_intent_id) WHERE payment_intent_id IS NOT NULL;

CREATE TABLE donation_history (
	donation_seq INTEGER NOT NULL,
	n            INTEGER NOT NULL,
	status       TEXT NOT NULL,
	at           INTEGER NOT NULL,
	failure_code TEXT NOT NULL DEFAULT '',
	note         TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (donation_seq, n)
) WITHOUT ROWID;
