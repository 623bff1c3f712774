//go:build kycstate_testhooks

package main

import (
	"context"
	"fmt"
)

// This file is compiled only with -tags kycstate_testhooks, as the end-to-end crash
// tests build the binary; the production build has testhooks_off.go instead, so it reads
// no such variable and cannot be made to stop an erasure half way.

// holdAfterEraseAppendEnv, set to 1, makes every erasure of a serve or query node stop
// between the append of applicantErased and the destruction of the key, as a crash
// there would: the crash tests kill the process at that point and check that the
// erasure completes after the restart.
const holdAfterEraseAppendEnv = "KYCSTATE_TEST_HOLD_AFTER_ERASE_APPEND"

// holdMidSnapshotUploadEnv, set to 1, makes every snapshot upload of a serve or query
// node stop half way, some of its chunks stored: the crash tests kill the process there
// and check that the snapshots before it are still restored.
const holdMidSnapshotUploadEnv = "KYCSTATE_TEST_HOLD_MID_SNAPSHOT_UPLOAD"

// holdAfterKeysWriteEnv, set to 1, makes every write of new data keys stop once KYC_KEYS
// has stored them, before any event sealed under them is written: the crash tests kill
// the process between the two writes and check that nothing is lost and no event is
// left without its key.
const holdAfterKeysWriteEnv = "KYCSTATE_TEST_HOLD_AFTER_KEYS_WRITE"

// installTestHooks sets on m the hooks its environment asks for.
func installTestHooks(e *env, m *Main) {
	if e.getenv(holdAfterEraseAppendEnv) == "1" {
		m.afterEraseAppend = func(ctx context.Context) error {
			fmt.Fprintf(e.stderr, "kycstate: %s: erasure held after its append\n", holdAfterEraseAppendEnv)
			<-ctx.Done()
			return ctx.Err()
		}
	}
	if e.getenv(holdAfterKeysWriteEnv) == "1" {
		m.afterKeysWrite = func(ctx context.Context) {
			fmt.Fprintf(e.stderr, "kycstate: %s: new keys stored, held before their events\n", holdAfterKeysWriteEnv)
			<-ctx.Done()
		}
	}
	if e.getenv(holdMidSnapshotUploadEnv) == "1" {
		m.midSnapshotUpload = func(ctx context.Context) error {
			fmt.Fprintf(e.stderr, "kycstate: %s: snapshot upload held half way\n", holdMidSnapshotUploadEnv)
			<-ctx.Done()
			return ctx.Err()
		}
	}
}
