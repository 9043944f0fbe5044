-- Provider budgets shared by every dispatcher on every node
-- (floodgate.BudgetState), taken under a row lock.
CREATE TABLE budgets (
	name       text PRIMARY KEY,
	tokens     double precision NOT NULL,
	rate       double precision NOT NULL,
	updated_at timestamptz NOT NULL,
	cut_at     timestamptz NOT NULL
);

-- Settings an operator changes at run time, for every node (the charging
-- pause switch).
CREATE TABLE settings (
	name       text PRIMARY KEY,
	value      text NOT NULL,
	updated_at timestamptz NOT NULL
);

-- Card fingerprints refused after a decline (card-testing defence).
CREATE TABLE blocked_fingerprints (
	fingerprint text PRIMARY KEY,
	blocked_at  timestamptz NOT NULL,
	until       timestamptz NOT NULL
);
CREATE INDEX blocked_fingerprints_at ON blocked_fingerprints (blocked_at);
