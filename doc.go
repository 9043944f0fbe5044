// Package floodgate holds the domain of a donation and raffle service built
// for the night when millions of people arrive at once: campaigns,
// donations, totals, money, the error vocabulary, and the interfaces of the
// engines behind them (Store, Provider, Clock).
//
// The package imports only the standard library. Adapters (internal/sqlite,
// internal/postgres, internal/stripe, internal/sandbox) implement its
// interfaces; only internal/cli decides which adapter runs.
package floodgate
