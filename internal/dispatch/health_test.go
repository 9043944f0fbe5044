package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

func TestProviderHealth(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var h providerHealth
	if note, err := h.ready(t0); note != "" || err != nil || h.up(t0) != 1 {
		t.Fatalf("never called: %q %v", note, err)
	}
	network := &floodgate.ProviderError{Kind: floodgate.ProviderNetwork}
	h.record(network, t0)
	if note, err := h.ready(t0.Add(10 * time.Second)); note != "" || err != nil {
		t.Fatalf("failing for 10s: %q %v", note, err)
	}
	h.record(errors.New("dial tcp: connection refused"), t0.Add(20*time.Second))
	// Unreachable: still ready (donations are accepted), with a note, and
	// down in the metric.
	if note, err := h.ready(t0.Add(31 * time.Second)); note == "" || err != nil || h.up(t0.Add(31*time.Second)) != 0 {
		t.Fatalf("failing for 31s: %q %v", note, err)
	}
	h.record(&floodgate.ProviderError{Kind: floodgate.ProviderCard}, t0.Add(32*time.Second))
	if note, err := h.ready(t0.Add(33 * time.Second)); note != "" || err != nil {
		t.Fatalf("a decline is an answer: %q %v", note, err)
	}
	h.record(context.Canceled, t0.Add(40*time.Second))
	if note, err := h.ready(t0.Add(100 * time.Second)); note != "" || err != nil {
		t.Fatalf("shutdown is not a provider failure: %q %v", note, err)
	}
	h.record(&floodgate.ProviderError{Kind: floodgate.ProviderAuth, HTTPStatus: 401}, t0.Add(101*time.Second))
	if _, err := h.ready(t0.Add(101 * time.Second)); err == nil {
		t.Fatal("refused credentials: still ready")
	}
	h.record(nil, t0.Add(102*time.Second))
	if note, err := h.ready(t0.Add(102 * time.Second)); note != "" || err != nil {
		t.Fatalf("after a success: %q %v", note, err)
	}
}
