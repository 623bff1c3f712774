package ingest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: the group commit
// and the queue start none of their own, and every server a test starts is stopped.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
