package projection

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: every WaitFor a
// test starts returns, and nothing of a Projection outlives its Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
