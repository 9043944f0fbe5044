package sandbox

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: every
// one that sandbox starts must end on Close or Stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
