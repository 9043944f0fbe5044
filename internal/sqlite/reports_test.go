package sqlite_test

import (
	"testing"

	"github.com/floodgate/floodgate/internal/storetest"
)

func TestReports(t *testing.T) { storetest.RunReports(t, open) }
