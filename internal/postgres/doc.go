// Package postgres is floodgate's Store for many nodes: PostgreSQL through
// pgx v5 (pgxpool), with the meaning of internal/sqlite proven by the same
// suite (internal/storetest).
//
// Three choices make it fit for a night of many nodes and one database:
//
//   - Accepting a batch is one transaction and one multi-row statement:
//     INSERT ... SELECT FROM unnest($1::text[], ...) ... ON CONFLICT
//     (campaign_id, idempotency_key) DO NOTHING RETURNING seq, id, with each
//     new donation's payment order and first history line written by the
//     same statement and the totals updated once per campaign. A row per statement costs a round trip per
//     donation; a batch costs a handful per commit, and the commit
//     (synchronous_commit=on) is the one durable write that answers every
//     donor in it. A key a concurrent batch is inserting makes the insert
//     wait on the unique index and then skip the key; the look-up after it
//     runs in a new READ COMMITTED snapshot, sees that row, and answers with
//     a replay or an idempotency mismatch.
//
//   - Claiming is SELECT ... FOR UPDATE SKIP LOCKED over the partial index
//     of waiting payment orders (and of processing ones whose lease
//     expired, first): dispatchers on any number of nodes claim disjoint
//     orders near the head of the line without waiting on one another, each
//     claim drawing a fencing token from a sequence. Leases are granted and
//     judged on the database's clock, one clock for every node. Every other
//     change locks its order with SELECT ... FOR UPDATE, asks the domain
//     (floodgate.ApplySettlement and its kin) what the change writes (a
//     write made under a claim applies only while the claim's token and
//     lease still hold the order), and writes that Transition with one
//     UPDATE of the changed columns.
//
//   - Migrations are embedded and versioned (schema_migrations) and run in
//     one transaction that first takes pg_advisory_xact_lock, so nodes that
//     start together migrate exactly once: one applies them, the others
//     wait and find nothing left to do. DDL is transactional, so a crash
//     leaves the schema as it was.
//
// Every transaction that changes totals takes those rows last, in campaign
// id order, so writers never wait on each other in a cycle; the one cycle
// left (two batches holding the same two new keys in opposite orders) is a
// deadlock PostgreSQL breaks, and the aborted transaction is run again.
package postgres
