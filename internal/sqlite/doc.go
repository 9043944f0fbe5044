// Package sqlite is floodgate's embedded Store: one SQLite file in WAL mode
// with synchronous=FULL, through modernc.org/sqlite (pure Go, no cgo).
//
// All writes go through one connection that begins every transaction with
// BEGIN IMMEDIATE, so writers never deadlock and the group-commit batcher
// gets one fsync per batch; reads use a separate pool of read-only
// connections, which WAL lets run beside the writer. An exclusive lock on a
// file beside the database keeps a second process from opening it: one
// dispatcher per database is what makes every claim safe to take back at
// start-up. It also makes that process's clock (Options.Clock) the
// database's clock, by which every lease is granted and every fence judged,
// and the counter row a fencing-token sequence (see orders.go).
package sqlite
