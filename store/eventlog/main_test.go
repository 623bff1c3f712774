package eventlog

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (AppendBatch's
// pipelined publishes are waited for before it returns). One goroutine is not ours:
// when a mirror is promoted, nats-server tries once to delete the mirror's consumer on
// the old origin and waits up to ten seconds for an answer, ignoring its own shutdown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).tryDeleteSourcingConsumer.func1"))
}
