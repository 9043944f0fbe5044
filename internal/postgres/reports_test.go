package postgres_test

import (
	"testing"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/storetest"
)

// TestReports runs the shared reports suite, each test in a schema of its
// own (see testSchema).
func TestReports(t *testing.T) {
	testURL(t)
	storetest.RunReports(t, func(tb testing.TB, clock floodgate.Clock) floodgate.Store {
		url, schema := testSchema(tb)
		return openStore(tb, url, schema, clock)
	})
}
