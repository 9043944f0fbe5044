-- Provider budgets shared by every dispatcher (floodgate.BudgetState).
CREATE TABLE budgets (
	name       TEXT PRIMARY KEY,
	tokens     REAL NOT NULL,
	rate       REAL NOT NULL,
	updated_at INTEGER NOT NULL,
	cut_at     INTEGER NOT NULL
);

-- Settings an operator changes at run time, for every node (the charging
-- pause switch).
CREATE TABLE settings (
	name       TEXT PRIMARY KEY,
	value      TEXT NOT NULL,
	updated_at INTEGER NOT NULL
);

-- Card fingerprints refused after a decline (card-testing defence).
CREATE TABLE blocked_fingerprints (
	fingerprint TEXT PRIMARY KEY,
	blocked_at  INTEGER NOT NULL,
	until       INTEGER NOT NULL
);
CREATE INDEX blocked_fingerprints_at ON blocked_fingerprints (blocked_at);
