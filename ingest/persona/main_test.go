package persona

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: the adapter starts
// none, and the fake Persona a test starts is closed with its connections.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
