package eventlog

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (AppendBatch's
// pipelined publishes are waited for before it returns).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
