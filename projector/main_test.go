package projector

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: every Run a
// test starts is stopped and waited for, and its embedded server is shut down.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
