// Command parity proves that two builds of floodgate do the same thing. It
// runs one floodgate binary (a sandbox provider and a node, from that
// binary, on loopback ports with a fresh data directory), drives a seeded
// workload through the public HTTP API that reaches every state a gift can
// end in, and writes what came of it as JSON: each gift's public view, the
// campaign's totals, the sandbox's ledger of PaymentIntents and each
// gift's history as the store recorded it. Ids are replaced by the
// idempotency key that made them and times are dropped, so the outputs of
// two runs with the same seed compare with diff.
//
//	go build -o /tmp/floodgate-old ./cmd/floodgate   # at the old commit
//	go build -o /tmp/floodgate-new ./cmd/floodgate
//	go run ./bench/parity --bin /tmp/floodgate-old --upgrade-bin /tmp/floodgate-new --seed 1 --out old.json
//	go run ./bench/parity --bin /tmp/floodgate-new --seed 1 --out new.json
//	diff old.json new.json
//
// The history is read with this repository's internal/sqlite package, after
// the node has stopped. A store written by an older schema is first
// upgraded by --upgrade-bin (its serve migrates the file, then stops), as
// an operator's upgrade would.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.Bin, "bin", "", "the floodgate binary to run (required)")
	flag.StringVar(&o.UpgradeBin, "upgrade-bin", "", "a newer floodgate binary whose serve migrates the store before it is read")
	flag.Uint64Var(&o.Seed, "seed", 1, "the workload's seed: the same seed makes the same gifts")
	flag.IntVar(&o.Gifts, "gifts", 300, "how many gifts")
	flag.Float64Var(&o.Rate, "rate", 10, "gifts posted per second")
	flag.Float64Var(&o.ProviderRate, "provider-rate", 15, "the node's provider rates (the sandbox answers 429 above 25/s)")
	flag.DurationVar(&o.ActionTimeout, "action-timeout", 4*time.Second, "the node's 3-D Secure action timeout: long enough for the workload to answer a challenge")
	flag.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "the longest the whole run may take")
	out := flag.String("out", "", "where to write the JSON (default: stdout)")
	flag.Parse()
	if o.Bin == "" {
		log.Fatal("parity: --bin is required")
	}
	o.Log = os.Stderr
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	res, err := run(ctx, o)
	if err != nil {
		log.Fatalf("parity: %v", err)
	}
	fmt.Fprint(os.Stderr, res.Summary())
	for _, w := range res.Unexpected {
		log.Printf("parity: unexpected: %s", w)
	}
	b, err := encode(res)
	if err != nil {
		log.Fatal(err)
	}
	if *out == "" {
		_, err = os.Stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// encode renders a result with stable ordering (maps are written sorted
// by key) and a final newline.
func encode(r *Result) ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return append(b, '\n'), nil
}
