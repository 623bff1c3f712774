package eventlog

import (
	"context"
	"testing"
	"time"
)

// A message already gone counts as deleted, whoever deleted it: the projector shreds an
// erased key as it folds applicantErased while the eraser deletes the same message, and
// the server answers the second with "sequence not found", which nats.go gives only as
// text. Without this the eraser left the erasure pending (seen on the 3-node cluster).
func TestSecureDeleteOfAGoneMessageIsDone(t *testing.T) {
	ctx := context.Background()
	l := startLog(t)
	seq := logAppend(t, l, logEvent(logApp(1), logApplicant(1), "applicantCreated", 1))
	if gone, err := secureDelete(ctx, l.events, seq, 5*time.Second); gone || err != nil {
		t.Fatalf("first delete: gone %v, %v; want false, nil", gone, err)
	}
	if gone, err := secureDelete(ctx, l.events, seq, 5*time.Second); !gone || err != nil {
		t.Fatalf("second delete: gone %v, %v; want true, nil", gone, err)
	}
	if gone, err := secureDelete(ctx, l.events, seq+100, 5*time.Second); !gone || err != nil {
		t.Fatalf("delete past the last sequence: gone %v, %v; want true, nil", gone, err)
	}
}
